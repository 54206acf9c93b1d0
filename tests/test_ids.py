"""Event and delivery ids: ULIDs, decoded here by hand from the ULID specification."""

import os

from alertbridge.ids import new_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(ulid: str) -> tuple[int, int]:
    value = 0
    for char in ulid:
        value = value * 32 + CROCKFORD.index(char)
    return value >> 80, value & ((1 << 80) - 1)


def test_an_id_is_a_ulid_carrying_its_millisecond() -> None:
    made = new_id(1_795_537_196.792)
    assert len(made) == 26 and set(made) <= set(CROCKFORD)
    assert made[0] in "01234567"  # 128 bits in 130: the first character holds three
    assert decode(made)[0] == 1_795_537_196_792


def test_ids_sort_by_time_and_do_not_collide() -> None:
    times = [1_700_000_000.0 + i * 0.001 for i in range(2000)]
    made = [new_id(t) for t in times]
    assert made == sorted(made)
    assert len({new_id(1_700_000_000.0) for _ in range(10_000)}) == 10_000


def test_processes_forked_from_one_that_made_ids_make_other_ids() -> None:
    """Two replicas forked from one process (a pre-forking server, the tests' forkserver) must not
    draw the same random bits: they would make the same event ids."""
    new_id(1_700_000_000.0)  # the parent has used its generator
    children = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one id, then out without running the parent's exit handlers
            os.write(write, new_id(1_700_000_000.0).encode())
            os._exit(0)
        os.close(write)
        children.append(os.read(read, 64).decode())
        os.close(read)
        os.waitpid(pid, 0)
    mine = new_id(1_700_000_000.0)
    assert len({*children, mine}) == 3, "each process draws its own random bits"
