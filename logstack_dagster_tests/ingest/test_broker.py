from logstack_dagster.ingest import broker


def test_start_status_stop(tmp_path):
    state = broker.start(tmp_path)
    try:
        assert state.alive
        assert state.address.startswith("127.0.0.1:")
        # A second start finds the running broker instead of starting another.
        assert broker.start(tmp_path) == state
        assert broker.read_state(tmp_path) == state
    finally:
        assert broker.stop(tmp_path) is True
    assert not state.alive
    assert broker.read_state(tmp_path) is None
    assert broker.stop(tmp_path) is False


def test_each_start_is_a_new_cluster(tmp_path):
    first = broker.start(tmp_path / "a")
    second = broker.start(tmp_path / "b")
    try:
        assert first.cluster_id != second.cluster_id
        assert first.address != second.address
    finally:
        broker.stop(tmp_path / "a")
        broker.stop(tmp_path / "b")
