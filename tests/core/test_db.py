"""``core.db.RowInsert``: the ORM's insert of one new row, compiled once, behaves as ``save()`` does (the new token
and its event on every ``POST /tokens`` go through it)."""

import pytest
from django.db import IntegrityError, transaction

from core.db import RowInsert
from merchants.models import ApiKey, Merchant

pytestmark = pytest.mark.django_db


def test_a_new_row_is_written_with_every_value_and_gets_its_primary_key():
    insert = RowInsert(ApiKey)
    merchant = Merchant.objects.create(name="Harbour Coffee")
    for name in ("first", "second"):  # the second call runs the statement compiled by the first
        key = ApiKey(merchant=merchant, name=name, prefix="sk_test_abc", key_hash=f"{name:0>64}", scopes=["tokens"])
        assert insert(key) is True
        assert key.pk is not None and not key._state.adding
        stored = ApiKey.objects.get(pk=key.pk)
        assert (stored.merchant_id, stored.name, stored.key_hash, stored.scopes, stored.created_at) == (
            merchant.pk,
            name,
            key.key_hash,
            ["tokens"],
            key.created_at,
        )
        assert stored.revoked_at is None


def test_a_row_a_unique_constraint_holds_is_skipped_when_conflicts_are_ignored():
    held = Merchant.objects.create(name="Harbour Coffee")
    twin = Merchant(name="Twin", public_id=held.public_id)
    with transaction.atomic():
        assert RowInsert(Merchant, ignore_conflicts=True)(twin) is False
        assert Merchant.objects.count() == 1  # the transaction goes on: nothing failed
    assert twin.pk is None and twin._state.adding
    assert list(Merchant.objects.values_list("name", flat=True)) == ["Harbour Coffee"]


def test_a_conflict_fails_when_not_ignored():
    held = Merchant.objects.create(name="Harbour Coffee")
    with pytest.raises(IntegrityError), transaction.atomic():
        RowInsert(Merchant)(Merchant(name="Twin", public_id=held.public_id))
    assert Merchant.objects.count() == 1
