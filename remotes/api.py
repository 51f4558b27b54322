"""JSON API paths of this app under /api2/json/."""
urlpatterns = []
