"""Domain exceptions. Library code raises these; the CLI maps them to exit codes in one place."""


class SpeechftError(Exception):
    """A problem the user can fix. The message names the file, line or key and what to change."""

    exit_code = 1


class InputError(SpeechftError):
    """A user-supplied file is missing, unreadable or malformed."""


class ConfigError(SpeechftError):
    """A configuration value or key is wrong."""


class UsageError(SpeechftError):
    """The command line itself is wrong (conflicting or missing options)."""

    exit_code = 2


class TrainingError(SpeechftError):
    """Training cannot go on (non-finite losses, a lost rank, a full disk); the message says why."""
