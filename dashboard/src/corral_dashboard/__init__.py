"""The Corral web dashboard (``corral dashboard``): server-rendered pages and a JSON
API over the core's read functions, with token- and CSRF-protected actions."""
