"""postal's job functions and the light declarations the API needs.

Import rules: the API imports only `tasks.registry`, `tasks.models`, `tasks.settings`,
`tasks.errors` and `tasks.connection`; the job bodies (`tasks.message`, `tasks.pages`,
`tasks.extract_job`) and their heavy dependencies are imported by workers alone, by the
dotted names stored in Redis. Nothing here imports Flask or does work at import time.
"""
