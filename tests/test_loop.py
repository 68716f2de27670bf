from composer_cfg import Logger, State, Timestamp, TrainingLoop
from conftest import Recorder


def test_events_fire_in_composer_order_around_the_body():
    rec = Recorder()
    logger = Logger(State("r"), rec)
    loop = TrainingLoop(logger)
    for epoch in loop.epochs(2):
        for batch in loop.batches(2, samples=4):
            logger.data_batch({"batch": batch, "seen_batch": logger.state.timestamp.batch})
        logger.data_epoch({"epoch": epoch, "seen_epoch": logger.state.timestamp.epoch})
    shape = [c[1] if c[0] == "event" else c[2] for c in rec.calls]
    assert shape == [
        "fit_start",
        "epoch_start",
        "batch_start", {"batch": 0, "seen_batch": 0}, "batch_end",
        "batch_start", {"batch": 1, "seen_batch": 1}, "batch_end",
        {"epoch": 0, "seen_epoch": 0},
        "epoch_end",
        "epoch_start",
        "batch_start", {"batch": 2, "seen_batch": 2}, "batch_end",
        "batch_start", {"batch": 3, "seen_batch": 3}, "batch_end",
        {"epoch": 1, "seen_epoch": 1},
        "epoch_end",
        "fit_end",
    ]
    ts = logger.state.timestamp
    assert (ts.epoch, ts.batch, ts.batch_in_epoch, ts.sample, ts.sample_in_epoch) == (2, 4, 0, 16, 0)
    assert ts.total_wct.total_seconds() > 0
    assert logger.state.dataloader_len == 2


def test_epochs_count_in_all_and_batches_of_a_continued_epoch_only_what_is_left():
    state = State("r", timestamp=Timestamp(epoch=1, batch=7, batch_in_epoch=2))  # a run continued mid-epoch
    loop = TrainingLoop(Logger(state, []))
    seen = [(epoch, list(loop.batches(5)), list(loop.batches(2))) for epoch in loop.epochs(3)]
    # the continued epoch runs its 3 batches left (a second call in it runs all it asks for), the next all 5
    assert seen == [(1, [7, 8, 9], [10, 11]), (2, [12, 13, 14, 15, 16], [17, 18])]
    assert list(loop.epochs(3)) == []  # the run is done


def test_a_checkpoint_fired_in_a_body_marks_the_point_after_it():
    state = State("r")
    loop = TrainingLoop(Logger(state, []))
    points = []
    for _ in loop.epochs(2):
        for _ in loop.batches(2, samples=4):
            points.append(("batch", state.after_body(state.timestamp)))
        points.append(("epoch", state.after_body(state.timestamp)))
    assert [(what, end.epoch, end.batch, end.batch_in_epoch, end.sample) for what, end in points] == [
        ("batch", 0, 1, 1, 4), ("batch", 0, 2, 2, 8), ("epoch", 1, 2, 0, 8),
        ("batch", 1, 3, 1, 12), ("batch", 1, 4, 2, 16), ("epoch", 2, 4, 0, 16)]
    assert state.after_body is None  # outside every body


def test_leaving_a_loop_early_leaves_no_body_in_progress():
    state = State("r")
    loop = TrainingLoop(Logger(state, []))
    for _ in loop.epochs(1):
        for _ in loop.batches(3):
            break
        assert state.after_body(state.timestamp).epoch == 1  # the epoch's body
        break
    assert state.after_body is None
