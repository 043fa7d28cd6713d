"""One module per AICC service: request and result classes and the namespace class."""
