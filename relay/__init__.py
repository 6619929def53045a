"""Review-contact mail relay: a business reaches a reviewer by e-mail without learning their address."""

__version__ = "0.1.0"
