"""Browser tests of the app's Desk JavaScript: a real Chromium against a real Frappe web server.

Run by ``tests/browser_suite.sh`` (``bash tests/run`` calls it after the Frappe suite), which
starts ``bench serve`` for the test site and passes its address in ``FABRIC_BROWSER_URL``. No
module here is named ``test_*``, so ``run-tests --app`` (which has no web server) leaves them out.
"""
