"""baselines: methods that read trained networks' weights, scored on zoobench's tasks.

* `baselines.ng_gnn`: ng-gnn, a message-passing network over the neural graph
  (`benchmark.neural_graph`): invariant to hidden-unit permutations by
  construction, sensitive to the order of input and output neurons. Heads for
  generalization (regression), classification and retrieval.
* `baselines.harness`: the shared training harness: `fit(model_cfg, train_cfg,
  task, seed) -> (trained, history)` (one padding budget per task, so one
  compilation; batch sharded over all local devices; model selection on the
  validation part only) and `predict(trained, part)` in the submission format.
* `baselines.ng_gnn_merging`: merging by Hungarian matching of ng-gnn's
  equivariant hidden-node embeddings.
* `baselines.classic`: the classic reference methods on the array views:
  flat-mlp, statnn, statnn-gbt (scikit-learn HistGradientBoosting) and
  cnn-matrices; the neural ones reuse the harness's heads, loss, mesh and
  prediction format (`harness.format_predictions`).
* `baselines.probe`: probe (ProbeGen, Kahana et al. 2024): learned probe inputs
  from a shared deep linear generator, run through each network's own forward
  pass (exact, vmapped over zero-padded groups), an MLP on the outputs;
  invariant to every function-preserving symmetry.
* `baselines.weight_matching`: merging baselines `naive` (identity) and
  `weight-matching` (Git Re-Basin coordinate descent over `permutation_spec`).
* `baselines.run`: `run(zoo, task, method, split, seeds, out_dir)` writes one
  submission per seed (`benchmark.submission`); the command ``zoobench baselines run``
  (`zoobench.baselines_command`) calls it. baselines never imports the leaderboard.
"""
