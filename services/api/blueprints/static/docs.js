// Starts Swagger UI on the spec URL the page names (no inline script: CSP-friendly).
const root = document.getElementById("swagger-ui");
window.SwaggerUIBundle({ url: root.dataset.specUrl, dom_id: "#swagger-ui" });
