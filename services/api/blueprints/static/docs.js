// Starts Swagger UI on the spec URL the page names (no inline script: CSP-friendly).
// Its requests carry the dashboard's key of this browser session, if any: an API that
// guards its reads refuses the document itself without it.
const root = document.getElementById("swagger-ui");
window.SwaggerUIBundle({
  url: root.dataset.specUrl,
  dom_id: "#swagger-ui",
  requestInterceptor: (request) => {
    const key = sessionStorage.getItem("modelops:api-key");
    if (key && !request.headers["X-API-Key"] && !request.headers.Authorization) {
      request.headers["X-API-Key"] = key;
    }
    return request;
  },
});
