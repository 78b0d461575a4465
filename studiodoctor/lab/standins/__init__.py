"""Stand-ins for APIs no real server here can serve (CloudFlare, Kubernetes, DNS, Sentry, New Relic,
Postmark): each answers the real API's documented response shapes from a state file."""
