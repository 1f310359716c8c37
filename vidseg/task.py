"""The competition's task, once: every other module imports these facts rather than restating them.

Given frames 1-11 of a video, predict the segmentation mask of frame 22, over 49 classes, at the
dataset's 160x240. Frames are numbered from 1 in prose and indexed from 0 in arrays: frame 11, the
last input, is index ``LAST_INPUT_INDEX``; frame 22, the scored one, is index ``TARGET_INDEX``.

Elsewhere the code's prose names them by role, not number: "the input frames" (``INPUT_FRAMES``),
"the last input frame", "the target frame" (the scored one), "the later frames" (``OUTPUT_FRAMES``, the
ones after the inputs, which SimVP predicts), and "the classes" (``NUM_CLASSES``); shapes write ``T`` for the input
frames' count and ``K`` for the classes' (``(B, T, H, W)``, ``(B, T, K, H, W)``). Text a user reads
is built from the numbers here: ``LAST_INPUT`` and ``TARGET`` name those frames.
"""

from __future__ import annotations

__all__ = ["INPUT_FRAMES", "OUTPUT_FRAMES", "TOTAL_FRAMES", "LAST_INPUT_INDEX", "TARGET_INDEX", "NUM_CLASSES", "FRAME_SIZE",
           "LAST_INPUT", "TARGET", "FRAME_SIZE_TEXT"]

INPUT_FRAMES = 11  # frames 1-11 are given (a hidden video has only these)
TOTAL_FRAMES = 2 * INPUT_FRAMES  # a labeled video: frames 1-22; SimVP predicts frames 12-22 from 1-11
OUTPUT_FRAMES = TOTAL_FRAMES - INPUT_FRAMES  # the later frames, 12-22: SimVP's outputs, an autoregressive rollout's steps
LAST_INPUT_INDEX = INPUT_FRAMES - 1  # frame 11, the last input (copy-last-frame's prediction)
TARGET_INDEX = TOTAL_FRAMES - 1  # frame 22, the frame the competition scores
NUM_CLASSES = 49  # background, then 3 shapes x 2 materials x 8 colours (vidseg.data.classes)
FRAME_SIZE = (160, 240)  # (height, width) of every frame and mask

LAST_INPUT = f"frame {LAST_INPUT_INDEX + 1}"  # the last input frame, as a user reads it
TARGET = f"frame {TARGET_INDEX + 1}"  # the scored frame, as a user reads it
FRAME_SIZE_TEXT = f"{FRAME_SIZE[0]}x{FRAME_SIZE[1]}"
