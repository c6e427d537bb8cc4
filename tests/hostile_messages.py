"""Messages no well-behaved client writes, put on the real brokers byte for byte.

confluent-kafka writes header names as UTF-8 text only, and pika encodes what Python values can
say: other services' clients (Go's take header names as bytes, any AMQP library can write a
timestamp past the year 9999) are not so bound. ``produce_raw`` speaks the Kafka protocol
itself (Produce v3, one record batch v2); ``amqp_fields`` lets pika publish field values given
as their encoded bytes.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pika.data

PRODUCE, PRODUCE_VERSION = 0, 3


class EncodedField(bytes):
	"""An AMQP field value as it goes on the wire: its type octet, then its bytes."""


def amqp_timestamp(seconds: int) -> EncodedField:
	"""Returns an AMQP timestamp field of ``seconds`` since the epoch, whatever year that is."""
	return EncodedField(b"T" + struct.pack(">Q", seconds))


@contextmanager
def amqp_fields() -> Iterator[None]:
	"""Lets pika publish ``EncodedField`` values as they are while the block runs."""
	encode = pika.data.encode_value

	def encode_value(pieces, value):
		if isinstance(value, EncodedField):
			pieces.append(bytes(value))
			return len(value)
		return encode(pieces, value)

	pika.data.encode_value = encode_value
	try:
		yield
	finally:
		pika.data.encode_value = encode


def produce_raw(
	bootstrap: str,
	topic: str,
	partition: int,
	key: bytes | None,
	value: bytes | None,
	headers: Sequence[tuple[bytes, bytes | None]],
) -> int:
	"""Writes one record with headers given as bytes; returns its offset."""
	batch = _record_batch(key, value, headers)
	name = topic.encode()
	body = struct.pack(">hhi", -1, -1, 10_000)  # no transactional id, acks=all, timeout
	body += struct.pack(">ih", 1, len(name)) + name
	body += struct.pack(">iii", 1, partition, len(batch)) + batch
	request = struct.pack(">hhih", PRODUCE, PRODUCE_VERSION, 1, 3) + b"raw" + body
	host, port = bootstrap.rsplit(":", 1)
	with socket.create_connection((host, int(port)), 10) as connection:
		connection.sendall(struct.pack(">i", len(request)) + request)
		response = _receive(connection, struct.unpack(">i", _receive(connection, 4))[0])
	# correlation id, one topic (its name), one partition: index, error code, base offset
	at = 8 + 2 + struct.unpack_from(">h", response, 8)[0] + 4
	_, error, offset = struct.unpack_from(">ihq", response, at)
	if error:
		raise RuntimeError(f"the broker refused the record: Kafka error code {error}")
	return offset


def _record_batch(key: bytes | None, value: bytes | None, headers) -> bytes:
	record = b"\x00" + _varint(0) + _varint(0) + _sized(key) + _sized(value) + _varint(len(headers))
	for name, header in headers:
		record += _sized(name) + _sized(header)
	record = _varint(len(record)) + record
	now = int(time.time() * 1000)
	# attributes, last offset delta, first and max timestamp, no producer id/epoch/sequence, 1 record
	checked = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + record
	rest = struct.pack(">ibI", -1, 2, _crc32c(checked)) + checked  # leader epoch, magic 2, CRC
	return struct.pack(">qi", 0, len(rest)) + rest


def _varint(number: int) -> bytes:
	number = (number << 1) ^ (number >> 63)  # zigzag
	out = bytearray()
	while number > 0x7F:
		out.append((number & 0x7F) | 0x80)
		number >>= 7
	out.append(number)
	return bytes(out)


def _sized(data: bytes | None) -> bytes:
	return _varint(-1) if data is None else _varint(len(data)) + data


def _crc32c_table() -> list[int]:
	table = []
	for byte in range(256):
		crc = byte
		for _ in range(8):
			crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
		table.append(crc)
	return table


CRC32C_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
	crc = 0xFFFFFFFF
	for byte in data:
		crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
	return crc ^ 0xFFFFFFFF


def _receive(connection: socket.socket, size: int) -> bytes:
	data = b""
	while len(data) < size:
		chunk = connection.recv(size - len(data))
		if not chunk:
			raise ConnectionError("the broker closed the connection")
		data += chunk
	return data
