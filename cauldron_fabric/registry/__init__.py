"""The schema registry on a Frappe site: Event Schema DocType, validation on every path in."""
