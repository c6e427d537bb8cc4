"""Every browser test, for ``bench run-tests --module cauldron_fabric.tests.browser.suite``.

run-tests takes one module; this one gathers the test cases of the others.
"""

from cauldron_fabric.tests.browser.desk_approvals import TestApprovalRequestForm
from cauldron_fabric.tests.browser.desk_circuits import TestFabricCircuits, TestGoneSubscription
from cauldron_fabric.tests.browser.desk_dead_letters import TestDeadLetterForm, TestDeadLetterList
from cauldron_fabric.tests.browser.desk_event_log import TestEventLogList, TestEventLogRequeue
from cauldron_fabric.tests.browser.desk_fabric_settings import TestFabricSettingsTestConnection
from cauldron_fabric.tests.browser.desk_smoke import TestDeskSmoke

__all__ = [
	"TestApprovalRequestForm",
	"TestDeadLetterForm",
	"TestDeadLetterList",
	"TestDeskSmoke",
	"TestEventLogList",
	"TestEventLogRequeue",
	"TestFabricCircuits",
	"TestFabricSettingsTestConnection",
	"TestGoneSubscription",
]
