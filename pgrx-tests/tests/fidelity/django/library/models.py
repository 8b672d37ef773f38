"""A lending library: the model app of the Django template. Its migration is
made by `makemigrations` when the test runs."""
from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower, Upper


class Author(models.Model):
    name = models.CharField(max_length=200, db_comment="the author's full name")
    born = models.DateField(null=True)
    tags = models.JSONField(default=list)
    profile = models.JSONField(null=True)
    code = models.GeneratedField(expression=Upper("name"), output_field=models.CharField(max_length=200), db_persist=True)

    class Meta:
        db_table_comment = "people who write books"
        indexes = [models.Index(Lower("name"), name="author_lower_name")]


class Book(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        PUBLISHED = "published"

    uid = models.UUIDField(unique=True, null=True)
    title = models.CharField(max_length=300, db_index=True)
    isbn = models.CharField(max_length=13, unique=True)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    price = models.DecimalField(max_digits=8, decimal_places=2, db_default=0)
    published_at = models.DateTimeField(null=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    pages = models.PositiveIntegerField(null=True)
    cover = models.BinaryField(null=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="book_price_not_negative"),
            models.UniqueConstraint(fields=["title", "author"], condition=Q(status="published"), name="book_published_once"),
        ]
        indexes = [models.Index(fields=["-published_at", "status"], name="book_recent")]


class Member(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    favourite_books = models.ManyToManyField(Book, blank=True)
    joined = models.DateTimeField(auto_now_add=True)
    limit = models.SmallIntegerField(default=3)


class Loan(models.Model):
    book = models.ForeignKey(Book, on_delete=models.PROTECT)
    member = models.ForeignKey(Member, on_delete=models.SET_NULL, null=True)
    start = models.DateField()
    due = models.DateField()
    returned = models.DateField(null=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(due__gte=F("start")), name="loan_due_after_start")]
