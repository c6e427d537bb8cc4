"""Operations of the Frappe layer that hooks, API methods and commands share."""
