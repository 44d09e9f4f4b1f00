"""One router per resource: explain jobs, their result files, and the service's health."""
