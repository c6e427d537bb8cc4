"""Settings saved before *Dead letters a bulk action takes in the request* existed get its default (500).

Without a stored value the form shows the field empty; bulk calls take an unset value as 500
already, so only what is shown changes.
"""

from cauldron_fabric.patches import default_for_a_new_settings_field


def execute() -> None:
	default_for_a_new_settings_field("dead_letters_in_request")
