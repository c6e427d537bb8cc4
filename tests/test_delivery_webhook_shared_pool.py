"""Deadlines on a pool shared by sending threads: the cut armed for one request never reaches
another on the same kept-alive connection, against a real receiver and real sockets.

The delivery worker's threads share one WebhookSender, so a connection one request gives back
is the next request's. The moments these tests need (a reader held just as it gives the
connection back, the watchdog held just before it cuts) are made precise by pausing the real
code there, as a busy CPU or a thread switch would, never by replacing it.
"""

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from cauldron_fabric.core.delivery import deadlines
from cauldron_fabric.core.delivery.webhook import MAX_RESPONSE_READ, WebhookTarget
from cauldron_fabric.testing.http_receiver import Reply
from conftest import BODY


def _send_in_thread(sender, target, message_id) -> tuple[threading.Thread, list]:
	outcomes: list = []
	thread = threading.Thread(
		target=lambda: outcomes.append(sender.send(target, message_id, BODY)), name=message_id
	)
	thread.start()
	return thread, outcomes


def test_a_connection_given_back_before_its_deadline_passes_is_never_cut_under_the_next_request(
	receiver, sender, monkeypatch
):
	# urllib3 gives a kept-alive connection back to the pool inside the read that ends the body,
	# while the deadline armed for that read still ran: passing then, it cut the next thread's
	# request on that connection after it was sent, and the retry reached the receiver twice.
	receiver.reply("/second", Reply(200, delay=0.6))  # still answering at the first's deadline
	first = WebhookTarget(receiver.url("/first"), timeout=0.4)
	put = queue.LifoQueue.put
	given_back = threading.Event()

	def give_back_then_stall(pool_queue, connection, *args, **kwargs):
		put(pool_queue, connection, *args, **kwargs)
		if connection is not None and threading.current_thread().name == "evt-first":
			given_back.set()  # the second thread takes it now, while this one is held
			receiver.wait_for("/second", timeout=2.0)
			time.sleep(max(0.0, started + first.timeout + 0.2 - time.monotonic()))

	monkeypatch.setattr(queue.LifoQueue, "put", give_back_then_stall)
	started = time.monotonic()
	first_thread, first_outcomes = _send_in_thread(sender, first, "evt-first")
	assert given_back.wait(2.0)
	second_thread, second_outcomes = _send_in_thread(
		sender, WebhookTarget(receiver.url("/second"), timeout=3.0), "evt-second"
	)
	first_thread.join(5.0)
	second_thread.join(5.0)
	assert first_outcomes[0].ok
	assert second_outcomes[0].ok, second_outcomes[0].error
	assert len(receiver.on("/second")) == 1


def test_an_alarm_the_watchdog_is_already_acting_on_never_cuts_the_next_request(
	receiver, sender, monkeypatch
):
	# The reader turned its alarm off without the watchdog's lock: the watchdog, past its check
	# that the alarm was on, cut the socket after the reader had given the connection back, under
	# the request another thread had just taken it for.
	# The body's end comes after the deadline, while the reader waits for it.
	receiver.reply("/first", Reply(200, body=b"ab", trickle=0.3, chunked=True))
	cut = deadlines.DeadlineHTTPConnection._cut
	cutting = threading.Event()

	def cut_after_a_pause(connection):
		cutting.set()
		time.sleep(0.5)
		cut(connection)

	monkeypatch.setattr(deadlines.DeadlineHTTPConnection, "_cut", cut_after_a_pause)
	first_thread, first_outcomes = _send_in_thread(
		sender, WebhookTarget(receiver.url("/first"), timeout=0.4), "evt-first"
	)
	assert cutting.wait(2.0)
	time.sleep(0.3)  # the first reader has the body's end and gave the connection back
	second_thread, second_outcomes = _send_in_thread(
		sender, WebhookTarget(receiver.url("/second"), timeout=3.0), "evt-second"
	)
	first_thread.join(5.0)
	second_thread.join(5.0)
	assert first_outcomes[0].ok
	assert second_outcomes[0].ok, second_outcomes[0].error
	assert len(receiver.on("/second")) == 1


def test_threads_sharing_a_sender_keep_their_connections_alive_whatever_the_answer(receiver, sender):
	# A connection goes back to the pool only once its deadline is off (cut_at): it must still go
	# back, for answers read to the end (2xx or 5xx, with or without a body); a body over the read
	# cap is dropped with its connection, and the pool opens another, never more than it holds.
	threads, each = 8, 100
	receiver.reply("/oversized", *[Reply(200, b"x" * (MAX_RESPONSE_READ + 4096))] * 20)
	for path, reply in (
		("/ok", Reply(200, b"ok")),
		("/empty", Reply(204, b"")),
		("/failing", Reply(503, b"busy")),
	):
		receiver.reply(path, *[reply] * each)
	paths = ["/ok", "/empty", "/failing"] * each
	with ThreadPoolExecutor(threads) as pool:
		list(
			pool.map(
				lambda i: sender.send(WebhookTarget(receiver.url("/oversized")), f"evt-big-{i}", BODY),
				range(20),
			)
		)
		dropped = receiver.connections
		outcomes = list(
			pool.map(
				lambda i: sender.send(WebhookTarget(receiver.url(paths[i])), f"evt-{i}", BODY),
				range(len(paths)),
			)
		)
	assert dropped == 20, "a body over the cap is not drained: its connection is closed"
	assert [outcome.status_code for outcome in outcomes] == [200, 204, 503] * each
	assert receiver.connections - dropped <= threads, (
		f"{receiver.connections - dropped} connections for {len(paths)} requests"
	)
