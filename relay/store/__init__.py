"""Persistence (peewee): the only package that talks to the database."""
