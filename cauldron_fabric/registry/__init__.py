"""The schema registry on a Frappe site: Event Schema DocType, validation on every path in.

* ``recording``: ``check_events`` (every recorded event) and ``check_consumed`` (events from the bus);
* ``cache``: compiled latest versions per process, invalidated by a Redis stamp;
* ``versions`` and ``subjects``: registering, numbering, compatibility modes, the dry run;
* ``parsing``: schemas, examples and version numbers as callers send them, read and checked;
* ``doctypes``: schemas of document events derived from DocTypes, kept in step with them;
* ``catalog``: the source document's event catalog installed as version-1 schemas;
* ``documentation`` and ``cli``: the AsyncAPI document, the catalog page, ``bench fabric codegen``.
"""
