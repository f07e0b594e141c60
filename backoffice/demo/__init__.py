"""The demo data of ``manage.py seed_demo`` (the command's docstring tells the story): ``plans`` say what each
token will be, ``seeder`` makes it through the services, ``history`` writes the webhook deliveries the retry schedule
would have left."""
