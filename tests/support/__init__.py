"""Helpers more than one test folder uses (fixtures are in tests/conftest.py): `http` JSON and problem+json
assertions, `api` accounts and read-your-writes headers, `system` settings, subprocesses and waiting, `db`
databases, `world` subjects, approved tutors and credit."""
