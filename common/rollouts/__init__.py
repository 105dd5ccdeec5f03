"""Rollouts: a challenger version beside its champion (shadow, canary, A/B), judged
on live traffic and promoted or aborted on the evidence."""
