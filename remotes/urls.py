from django.urls import path

from remotes import views

urlpatterns = [
    path("", views.remote_list, name="remote-list"),
    path("add/", views.remote_add, name="remote-add"),
    path("add/test/", views.remote_add_test, name="remote-add-test"),
    path("<str:remote>/", views.remote_detail, name="remote-detail"),
    path("<str:remote>/edit/", views.remote_edit, name="remote-edit"),
    path("<str:remote>/edit/test/", views.remote_edit_test, name="remote-edit-test"),
    path("<str:remote>/test/", views.remote_test, name="remote-test"),
    path("<str:remote>/remove/", views.remote_remove, name="remote-remove"),
]
