"""The regime study (`python -m bench study`): when does multi-task learning beat the
multiplied GBDT pair? A grid over the synthetic generator's conversion rate, click/conversion
relatedness and train size; each point is an ordinary run folder (bench/commands/run.py's code
path), the report (bench/report/study.py) is built from those records alone.
"""
