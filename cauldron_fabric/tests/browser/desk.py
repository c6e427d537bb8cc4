"""The browser tests' harness: a headless Chromium logged in to Desk, waiting explicitly on what it shows.

Every wait is on something the user would see (a button, a field's value, a dialog, an alert)
or on the form's model; none is a sleep. A wait that times out fails with the page's visible
text, which is usually what went wrong.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils.password import update_password
from selenium import webdriver
from selenium.common.exceptions import (
	ElementClickInterceptedException,
	ElementNotInteractableException,
	StaleElementReferenceException,
	TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from cauldron_fabric.tests.browser.site_state import USER

URL_VARIABLE = "FABRIC_BROWSER_URL"
CHROMIUM = os.environ.get("FABRIC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FABRIC_CHROMEDRIVER", "/usr/bin/chromedriver")
ROLES = ("System Manager", "Fabric Manager")
WAIT = 30  # seconds: a werkzeug server on two busy cores can take a while to boot Desk
# Clicking can race an overlay on its way out (a dialog's fade, Frappe's freeze screen).
PASSING = (ElementClickInterceptedException, ElementNotInteractableException, StaleElementReferenceException)


def server_url() -> str:
	"""Returns the address of the web server the harness started for this site."""
	url = os.environ.get(URL_VARIABLE)
	if not url:
		raise RuntimeError(
			f"{URL_VARIABLE} is not set: the browser tests need a web server for the site. "
			"Run them with bash tests/browser_suite.sh REPO BENCH_DIR SITE, which starts one."
		)
	return url.rstrip("/")


def desk_route(doctype: str) -> str:
	"""Returns the route Desk gives a DocType (``Dead Letter`` -> ``dead-letter``), as frappe.router.slug does."""
	return frappe.scrub(doctype).replace("_", "-")


def css_string(text: str) -> str:
	"""Returns ``text`` escaped for a double-quoted CSS string, as an attribute selector's value.

	The list's checkboxes carry the document's name as it is: quoted as in a URL, a name with a
	slash or a colon (a webhook endpoint's circuit, http://host:port) matched no row.
	"""
	return text.replace("\\", "\\\\").replace('"', '\\"')


def ensure_desk_user() -> str:
	"""Makes the tests' desk user (once) and gives it a new random password, which it returns."""
	if not frappe.db.exists("User", USER):
		frappe.get_doc(
			{
				"doctype": "User",
				"email": USER,
				"first_name": "Fabric Browser",
				"send_welcome_email": 0,
				"user_type": "System User",
				"roles": [{"role": role} for role in ROLES],
			}
		).insert(ignore_permissions=True)
	password = secrets.token_urlsafe(16)
	update_password(USER, password)
	frappe.db.commit()
	return password


def mark_setup_complete() -> None:
	"""Marks the site's setup wizard complete (browser_suite.sh puts the flag back: see site_state).

	Until it is, Desk sends every route to the setup wizard. Running the wizard would also set
	the site's country, time zone and currency, which the Frappe suite on the same site would then
	run under; only the flag is changed, and only for the browser tests.
	"""
	frappe.db.set_single_value("System Settings", "setup_complete", 1)
	frappe.db.commit()
	# Desk reads the flag from the cached System Settings and the user's cached boot.
	frappe.clear_document_cache("System Settings", "System Settings")
	frappe.clear_cache(user=USER)


class Desk:
	"""A headless Chromium on the site's Desk."""

	def __init__(self, base_url: str):
		options = webdriver.ChromeOptions()
		options.binary_location = CHROMIUM
		# No sandbox: CI runs as root, and containers rarely allow Chromium's user namespaces.
		for argument in (
			"--headless=new",
			"--no-sandbox",
			"--disable-dev-shm-usage",
			"--window-size=1400,1000",
		):
			options.add_argument(argument)
		self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
		self.base_url = base_url

	def quit(self) -> None:
		"""Closes the browser."""
		self.driver.quit()

	def wait(self, condition, what: str, timeout: float = WAIT):
		"""Returns ``condition(driver)`` once truthy; fails saying ``what`` was awaited and what the page shows."""
		try:
			return WebDriverWait(self.driver, timeout, ignored_exceptions=PASSING).until(condition)
		except TimeoutException:
			shown = self.driver.find_element(By.TAG_NAME, "body").text[-2000:]
			raise AssertionError(
				f"waited {timeout:g} s for {what}; the page at {self.driver.current_url} shows:\n{shown}"
			) from None

	def visible(self, css: str, within: WebElement | None = None) -> WebElement | None:
		"""Returns the first element matching ``css`` that is displayed (Desk keeps hidden pages)."""
		for element in (within or self.driver).find_elements(By.CSS_SELECTOR, css):
			if element.is_displayed():
				return element
		return None

	def find(self, css: str, what: str | None = None) -> WebElement:
		"""Waits for a displayed element matching ``css``."""
		return self.wait(lambda _: self.visible(css), what or f"a visible {css}")

	def click(self, css: str, what: str | None = None) -> None:
		"""Clicks the displayed element matching ``css`` once it takes the click."""

		def clicked(_):
			element = self.visible(css)
			if element is None:
				return False
			element.click()
			return True

		self.wait(clicked, what or f"{css} to be clickable")

	def login(self, user: str, password: str) -> None:
		"""Logs in through the login page and waits for Desk."""
		self.driver.get(f"{self.base_url}/login")
		self.find("#login_email").send_keys(user)
		self.find("#login_password").send_keys(password)
		self.click(".btn-login")
		self.wait(lambda d: "/app" in d.current_url, "Desk after logging in")

	def open_form(self, doctype: str, name: str | None = None) -> None:
		"""Opens a document's form (a Single's when ``name`` is None) and waits until it is shown."""
		route = desk_route(doctype) + (f"/{quote(name, safe='')}" if name else "")
		self.driver.get(f"{self.base_url}/app/{route}")
		shown = (
			"return !!(window.cur_frm && cur_frm.doctype === arguments[0] && cur_frm.docname === arguments[1]"
		)
		shown += " && !cur_frm.doc.__islocal && $(cur_frm.wrapper).is(':visible'))"
		self.wait(
			lambda d: d.execute_script(shown, doctype, name or doctype), f"the form of {doctype} {name or ''}"
		)

	def open_list(self, doctype: str, **filters: str) -> None:
		"""Opens a DocType's list filtered by ``filters`` (field=value, as a link to it would)."""
		query = "&".join(f"{field}={quote(value, safe='')}" for field, value in filters.items())
		self.driver.get(f"{self.base_url}/app/{desk_route(doctype)}?{query}")
		self.find(".frappe-list .result", f"the list of {doctype}")

	def list_row(self, name: str) -> WebElement:
		"""Waits for the list's row of document ``name``."""
		checkbox = f'.list-row-checkbox[data-name="{css_string(name)}"]'
		return self.find(f".list-row-container:has({checkbox})", f"the list row of {name}")

	def row_indicator(self, name: str) -> WebElement:
		"""Waits for the status indicator of document ``name``'s row (the DocType's states or list JS)."""
		return self.wait(
			lambda _: self.visible(".indicator-pill", within=self.list_row(name)),
			f"the indicator of {name}",
		)

	def list_names(self) -> list[str]:
		"""Returns the names of the rows the list shows now, top to bottom."""
		boxes = self.driver.find_elements(
			By.CSS_SELECTOR, ".frappe-list .result .list-row-checkbox[data-name]"
		)
		return [box.get_attribute("data-name") for box in boxes if box.is_displayed()]

	def check_row(self, name: str) -> None:
		"""Ticks the list row of document ``name``."""
		self.click(f'.list-row-checkbox[data-name="{css_string(name)}"]', f"the checkbox of {name}")

	def list_action(self, label: str) -> None:
		"""Opens the list's Actions menu and picks ``label`` (an add_action_item of the list's JS)."""
		self.click(".page-actions .actions-btn-group > button", "the Actions menu")
		item = ".page-actions .actions-btn-group .dropdown-item"

		def picked(_):
			for element in self.driver.find_elements(By.CSS_SELECTOR, item):
				if element.is_displayed() and element.text.strip() == label:
					element.click()
					return True
			return False

		self.wait(picked, f"the action {label}")

	def button(self, label: str) -> str:
		"""Returns the selector of a form's or list's own button (add_custom_button, add_action_item)."""
		return f'.page-actions button[data-label="{quote(label, safe="")}"]'

	def click_button(self, label: str) -> None:
		"""Clicks the page's button ``label``."""
		self.click(self.button(label), f"the {label} button")

	def wait_without_button(self, label: str) -> None:
		"""Waits until the page no longer shows the button ``label``."""
		self.wait(lambda _: self.visible(self.button(label)) is None, f"the {label} button to go")

	def field(self, fieldname: str) -> str:
		"""Returns the selector of a form field's control."""
		return f'.frappe-control[data-fieldname="{fieldname}"]'

	def field_text(self, fieldname: str) -> str:
		"""Returns what a read-only field shows."""
		return self.find(f"{self.field(fieldname)} .control-value").text.strip()

	def open_section(self, fieldname: str) -> None:
		"""Opens a collapsed section of the form by clicking its head, as a user would."""
		self.click(f'.form-section[data-fieldname="{fieldname}"] .section-head', f"the head of {fieldname}")
		self.wait(
			lambda _: self.visible(f'.form-section[data-fieldname="{fieldname}"] .section-body'),
			f"section {fieldname} to open",
		)

	def wait_field_text(self, fieldname: str, text: str) -> None:
		"""Waits until a read-only field shows ``text``."""
		self.wait(lambda _: self.field_text(fieldname) == text, f"field {fieldname} to show {text!r}")

	def type_into_field(self, fieldname: str, text: str) -> None:
		"""Types ``text`` into a form's field and waits until the form holds it, as a user pauses."""
		box = self.find(f"{self.field(fieldname)} input", f"the {fieldname} field")
		box.clear()
		box.send_keys(text)
		held = "return cur_frm.doc[arguments[0]] === arguments[1] && cur_frm.is_dirty()"
		self.wait(lambda d: d.execute_script(held, fieldname, text), f"the form to take {fieldname}")

	def fill_dialog(self, fieldname: str, text: str) -> None:
		"""Types ``text`` into a dialog's field."""
		box = self.find(
			f".modal.show {self.field(fieldname)} textarea, .modal.show {self.field(fieldname)} input"
		)
		box.send_keys(text)

	def confirm_dialog(self) -> None:
		"""Presses the open dialog's primary button."""
		self.click(".modal.show:not(.msgprint-dialog) .btn-modal-primary", "the dialog's primary button")

	def message_box(self) -> WebElement | None:
		"""Returns the shown message (frappe.msgprint), which may lie over a dialog."""
		for modal in self.driver.find_elements(By.CSS_SELECTOR, ".modal.show"):
			text = self.visible(".msgprint", within=modal)
			if modal.is_displayed() and text is not None and text.text.strip():
				return modal
		return None

	def message(self) -> tuple[str, str]:
		"""Waits for a message (frappe.msgprint, a refused call) and returns its title and text."""
		box = self.wait(lambda _: self.message_box(), "a message")
		return self.visible(".modal-title", within=box).text.strip(), self.visible(
			".msgprint", within=box
		).text

	def close_message(self) -> None:
		"""Closes the message and waits until it is gone."""
		box = self.wait(lambda _: self.message_box(), "a message")

		def closed(_):
			# Bootstrap ignores a close while the dialog still fades in: click until it goes.
			if not box.is_displayed():
				return True
			button = self.visible(".btn-modal-close", within=box)
			if button is not None:
				button.click()
			return False

		self.wait(closed, "the message to close")

	def alert(self, text: str) -> None:
		"""Waits for a passing alert (frappe.show_alert) that holds ``text``."""
		self.wait(
			lambda _: any(
				text in e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".alert-message")
			),
			f"an alert saying {text!r}",
		)


class DeskCase(FrappeTestCase):
	"""A test class with a browser logged in to Desk as the tests' manager (``USER``)."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		base_url = server_url()
		password = ensure_desk_user()
		mark_setup_complete()
		cls.desk = Desk(base_url)
		cls.addClassCleanup(cls.desk.quit)
		cls.desk.login(USER, password)

	def setUp(self):
		frappe.set_user("Administrator")

	def committed(self) -> None:
		"""Ends this test's transaction, so that what the web server committed since is read."""
		frappe.db.rollback()

	def commit_until_the_end(self, doctype: str, filters: dict) -> None:
		"""Commits what the test made, for the web server to see; the ``doctype`` rows that
		``filters`` pick are deleted when the test ends, whatever the server did to them."""
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, doctype, filters)
		self.addCleanup(self.committed)
