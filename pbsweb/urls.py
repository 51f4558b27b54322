from django.urls import include, path

from pbsweb import api, views

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("tasks/", views.task_list, name="task-list"),
    path("tasks/<str:upid>/", views.task_detail, name="task-detail"),
    path("tasks/<str:upid>/log/", views.task_log, name="task-log"),
    path("tasks/<str:upid>/log/download/", views.task_log_download, name="task-log-download"),
    path("tasks/<str:upid>/status/", views.task_status, name="task-status"),
    path("tasks/<str:upid>/stop/", views.task_stop, name="task-stop"),
    path("access/", views.access_control, name="access-control"),
    path("access/users/add/", views.user_add, name="user-add"),
    path("access/users/<str:username>/remove/", views.user_remove, name="user-remove"),
    path("access/permissions/", views.permissions, name="permissions"),
    path("access/permissions/add/", views.permission_add, name="permission-add"),
    path("access/permissions/<int:id>/remove/", views.permission_remove, name="permission-remove"),
    path("access/tokens/", views.api_tokens, name="api-tokens"),
    path("access/tokens/add/", views.api_token_add, name="api-token-add"),
    path("access/tokens/<int:id>/remove/", views.api_token_remove, name="api-token-remove"),
    path("api2/json/", include(api.urlpatterns)),
    path("datastore/", include("datastores.urls")),
    path("remotes/", include("remotes.urls")),
    path("", include("syncjobs.urls")),
]
