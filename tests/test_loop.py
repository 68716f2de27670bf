from composer_cfg import Logger, State, TrainingLoop
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
