"""What every API and page of Quorum shares: domain errors, role permissions, the project-scoped API view,
bounded pages and the sign-in limit.

`errors`, `pagination` and `signin` import nothing of Quorum (annotation's models, services and selectors
raise `common.errors`); `permissions` and `views` read annotation's roles and memberships, and are used by
the APIs (annotation/api, training/api, training/feedback, training/rounds) and the web UI.
"""
