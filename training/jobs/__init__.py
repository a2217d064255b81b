"""Job rows and how they run: the columns every kind shares (`models`) and one runtime for all (`runtime`)."""
