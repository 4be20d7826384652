"""The daily-report backend: seven Lambda handlers sharing one container image."""
