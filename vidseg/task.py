"""The competition's task, once: every other module imports these facts rather than restating them.

Given frames 1-11 of a video, predict the segmentation mask of frame 22, over 49 classes, at the
dataset's 160x240. Frames are numbered from 1 in prose and indexed from 0 in arrays: frame 11, the
last input, is index ``LAST_INPUT_INDEX``; frame 22, the scored one, is index ``TARGET_INDEX``.
"""

from __future__ import annotations

__all__ = ["INPUT_FRAMES", "TOTAL_FRAMES", "LAST_INPUT_INDEX", "TARGET_INDEX", "NUM_CLASSES", "FRAME_SIZE"]

INPUT_FRAMES = 11  # frames 1-11 are given (a hidden video has only these)
TOTAL_FRAMES = 2 * INPUT_FRAMES  # a labeled video: frames 1-22; SimVP predicts frames 12-22 from 1-11
LAST_INPUT_INDEX = INPUT_FRAMES - 1  # frame 11, the last input (copy-last-frame's prediction)
TARGET_INDEX = TOTAL_FRAMES - 1  # frame 22, the frame the competition scores
NUM_CLASSES = 49  # background, then 3 shapes x 2 materials x 8 colours (vidseg.data.classes)
FRAME_SIZE = (160, 240)  # (height, width) of every frame and mask
