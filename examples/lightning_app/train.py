"""Train the tiny model of configs/model, logging with composer_cfg; see README.md."""

import time

from hydra.utils import instantiate

from composer_cfg import Event, LogLevel, TrainingLoop, hydra_main, instantiate_logger


@hydra_main(config_path="configs", config_name="train")
def main(cfg):
    logger = instantiate_logger(cfg.get("logger"), run_name=cfg.run_name, resume=cfg.resume)
    model = instantiate(cfg.model)
    state = logger.state
    if logger.resumed_from is not None:  # a continued run starts at its last checkpoint
        model.load(state.path(checkpoint(state.run_name, int(state.timestamp.epoch))))
    loop = TrainingLoop(logger, dataloader_len=cfg.batches_per_epoch)
    with logger:
        for epoch in loop.epochs(cfg.epochs):  # the epochs not done yet: all of them, unless resumed
            losses = []
            for batch in loop.batches(cfg.batches_per_epoch):
                losses.append(model.step(batch))
                logger.data_batch({"loss/train": losses[-1]})
                time.sleep(cfg.seconds_per_batch)
            logger.data_epoch({"epoch": epoch, "loss/epoch": sum(losses) / len(losses)})
            name = checkpoint(state.run_name, epoch + 1)
            model.save(state.path(name))  # in the job's directory, beside the logs
            logger.file_artifact(LogLevel.EPOCH, name, state.path(name), overwrite=True)
            logger.run_event(Event.EPOCH_CHECKPOINT)  # a resumed run continues from here


def checkpoint(run_name: str, epochs_done: int) -> str:
    """The model's file after `epochs_done` epochs (named like Composer's ep1, ep2...), relative."""
    return f"{run_name}/checkpoints/ep{epochs_done}.json"


if __name__ == "__main__":
    main()
