"""The customer's web face: tracking pages and forms, served by Starlette with Jinja2."""
