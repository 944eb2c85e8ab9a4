"""Optimizers on flat vectors, learning-rate schedules, clipping, triggers, metrics."""
from bigdl_py.optim.optimizers import (SGD, LARS, Adam, AdamW, Adagrad, RMSprop, Optimizer, lars_exclude,
                                        optimizers_get)
from bigdl_py.optim.schedules import (Constant, Step, MultiStep, Exponential, Poly, Cosine, Warmup,
                                      SequentialSchedule, Plateau, PlateauState, Schedule, linear_scaling_lr,
                                      schedules_get)
from bigdl_py.optim.clipping import clip_by_value, clip_by_global_norm, global_norm_sq, clip_coefficient, scale
from bigdl_py.optim.triggers import (TrainingState, Trigger, MaxEpoch, MaxIteration, EveryEpoch, SeveralIteration,
                                     MinLoss, MaxScore, Or, And, triggers_get)
from bigdl_py.optim.metrics import (Metric, TopK, Top1Accuracy, Top5Accuracy, Loss, MAE, AUC, Precision, Recall,
                                    metrics_get)
from bigdl_py.optim.recipes import Recipe, large_batch_recipe
