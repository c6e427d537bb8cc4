"""Subscriptions on a Frappe site: routing recorded events to their destinations.

``recording`` queues deliveries in the transaction of the event (``record()`` calls it),
``subscriptions`` compiles Event Subscriptions and keeps every process's index fresh,
``worker`` runs the core delivery worker (``bench fabric deliver``, ``cli``; the scheduler's
safety net in ``jobs``), ``dead_letters`` files and retries Dead Letters, ``schedules`` fires
cron-style triggers, ``handlers`` runs in-app handlers, ``connections`` joins the RabbitMQ
settings and checks the webhook allow-list, ``stats`` feeds the subscription form.
"""
