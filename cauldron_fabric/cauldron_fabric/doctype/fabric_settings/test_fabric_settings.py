"""Fabric Settings refuse what cannot work, with a message that says what to write instead."""

import frappe
from frappe.tests.utils import FrappeTestCase


class TestFabricSettings(FrappeTestCase):
	def settings(self, **values):
		doc = frappe.get_single("Fabric Settings")
		doc.update(values)
		return doc

	def test_bootstrap_servers_must_be_host_and_port(self):
		for bad in ("kafka-1", "kafka-1:notaport", "kafka-1:70000", "http://kafka:9092"):
			with self.assertRaisesRegex(frappe.ValidationError, "is not host:port"):
				self.settings(bootstrap_servers=bad).save()

	def test_bootstrap_servers_are_normalised(self):
		doc = self.settings(bootstrap_servers=" kafka-1:9092 , kafka-2:9093,")
		doc.validate()
		self.assertEqual(doc.bootstrap_servers, "kafka-1:9092,kafka-2:9093")

	def test_sasl_needs_credentials(self):
		doc = self.settings(
			bootstrap_servers="k:9092", security_protocol="SASL_SSL", sasl_username="", sasl_password=""
		)
		self.assertRaisesRegex(frappe.ValidationError, "needs a SASL username and password", doc.save)

	def test_ca_must_be_pem(self):
		doc = self.settings(security_protocol="SSL", ssl_ca="not a certificate")
		self.assertRaisesRegex(frappe.ValidationError, "PEM", doc.save)

	def test_topic_template_placeholders_are_checked(self):
		doc = self.settings(topic_template="cauldron.{doctype}")
		self.assertRaisesRegex(frappe.ValidationError, r"unknown placeholder\(s\) doctype", doc.save)

	def test_a_topic_template_that_names_no_kafka_topic_is_refused(self):
		for template in (".", "..", " .. "):
			doc = self.settings(topic_template=template)
			self.assertRaisesRegex(frappe.ValidationError, "names no topic Kafka accepts", doc.save)

	def test_numbers_are_bounded(self):
		doc = self.settings(topic_partitions=0)
		self.assertRaisesRegex(frappe.ValidationError, "between 1 and 10000", doc.save)

	def test_sasl_password_is_stored_as_a_password(self):
		meta = frappe.get_meta("Fabric Settings")
		self.assertEqual(meta.get_field("sasl_password").fieldtype, "Password")

	def test_ca_must_be_a_certificate_kafka_can_read(self):
		# Only the header was checked: a pasted certificate with a broken body was saved, and
		# the relay stopped with a traceback the first time it built its Kafka producer.
		import certifi

		pem = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----"
		doc = self.settings(security_protocol="SSL", ssl_ca=pem)
		self.assertRaisesRegex(frappe.ValidationError, "TLS CA certificate", doc.save)
		with open(certifi.where()) as bundle:
			doc = self.settings(security_protocol="SSL", ssl_ca=bundle.read())
		doc.validate()  # a real bundle, several certificates, passes
