"""The one exception type for mistakes a user can fix.

Raise `UserError` for a bad config value, missing or broken data, or a
workdir that cannot be used; its message is one paragraph that says what is
wrong and how to fix it. `cli.run` turns it into `Error: <message>` and a
non-zero exit, with no traceback, for every command-line tool. It is a
`ValueError`, so library callers that catch those keep working.
"""


class UserError(ValueError):
  """A mistake in the command, config, data or workdir (not in the code)."""
