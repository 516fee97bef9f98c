"""The server-rendered admin console (templates/console/): persons, enrollment (upload and webcam),
verify test page, policy with calibration, API keys, audit trail."""
