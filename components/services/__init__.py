"""The platform's services: components that take their config section and the contracts of the
backing services they use (tracking, serving, monitoring, routing, CI runners, progressive delivery,
drift, admission, team access)."""
