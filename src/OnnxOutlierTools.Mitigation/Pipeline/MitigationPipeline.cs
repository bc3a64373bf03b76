using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.Verification;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Mitigation.Pipeline;

/// <summary>One group of steps checked together: consecutive exact steps with the same proof inputs are proven at once
/// (one save, one proof), a measured step on its own.</summary>
public sealed record StageOutcome(IReadOnlyList<StepReport> Steps, StepExactness Exactness, string ModelPath, ProofResult? Proof, string? Measurement);

public sealed record MitigationOutcome(IReadOnlyList<StageOutcome> Stages, string ModelPath);

/// <summary>A rewrite produced a model ONNX Runtime cannot run (a bug of the rewrite, or a graph form it misjudged): like a
/// failed proof, nothing is written and the CLI exits 3.</summary>
public sealed class RewriteFailedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Runs the steps in the given (fixed) order on one working copy of the model and checks each: after a group of
/// exact steps the model is saved to the staging folder and proven against the previous stage (the original model for the
/// first) on the calibration windows (<see cref="EquivalenceProof"/>; a failure throws <see cref="NotEquivalentException"/>
/// and the caller writes nothing); a measured step's effect is measured by <c>measure</c>. Stages are saved with external
/// data and every proof runs from files, so nothing is held in memory but the tensors a step computes chunk by chunk.
/// The last stage's folder is the result; the caller moves it into place.</summary>
public static class MitigationPipeline
{
    /// <param name="statistics">The original model's calibration statistics (and <paramref name="analysis"/> of them).</param>
    /// <param name="calibrationWindows">The windows those statistics came from: a step that reads statistics after an earlier
    /// step changed the model gets statistics calibrated again on them (SmoothQuant's ranges after a norm fold).</param>
    /// <param name="windows">The proof's windows.</param>
    public static MitigationOutcome Run(string modelPath, IReadOnlyList<MitigationStep> steps, string stagingFolder,
        CalibrationStatistics? statistics, AnalysisResult? analysis, IReadOnlyList<int[]> windows, SessionSettings session,
        Func<string, string, string?>? measure = null, TextWriter? log = null, ProofTolerance? tolerance = null,
        IReadOnlyList<int[]>? calibrationWindows = null, AnalysisSettings? analysisSettings = null)
    {
        if (steps.Count == 0) throw new ArgumentException("no mitigation was asked for", nameof(steps));
        if (windows.Count == 0) throw new ArgumentException("the proof needs calibration windows", nameof(windows));
        bool changedSinceStatistics = false;
        using var model = ModelReader.Load(modelPath);
        tolerance ??= ProofTolerance.For(model);
        var stages = new List<StageOutcome>();
        string previous = modelPath;
        var group = new List<(MitigationStep Step, StepReport Report)>();

        void Flush()
        {
            if (group.Count == 0) return;
            string stagePath = Path.Combine(stagingFolder, $"stage{stages.Count + 1}", "model.onnx");
            // A weight copied before its edit (it was shared) leaves the original without readers once every reader moved.
            model.Apply(new UnusedInitializerRemoval());
            ModelWriter.Save(model, stagePath, new SaveOptions { Layout = TensorLayout.External, Durable = false });
            var reports = group.Select(g => g.Report).ToList();
            string names = string.Join(" + ", group.Select(g => g.Step.Name));
            var first = group[0].Step;
            if (first.Exactness == StepExactness.Exact)
            {
                log?.WriteLine($"proving {names} on {windows.Count} window(s) ...");
                ProofResult proof;
                try
                {
                    var cases = ProofInputs.Build(previous, stagePath, windows.Select(first.ProofWindow).ToList(), first.DroppedPrefix, session);
                    proof = EquivalenceProof.Require(names, previous, stagePath, cases, tolerance, session);
                }
                catch (ModelRunException ex)
                {
                    // The staging file is not a name the user knows; the rewrite is what failed.
                    throw new RewriteFailedException($"{names}: the rewritten model does not run on ONNX Runtime ({ex.Message.Replace(stagePath, "rewritten model")}); nothing written", ex);
                }
                stages.Add(new StageOutcome(reports, StepExactness.Exact, stagePath, proof, null));
            }
            else
                stages.Add(new StageOutcome(reports, StepExactness.Measured, stagePath, null, measure?.Invoke(previous, stagePath)));
            previous = stagePath;
            group.Clear();
        }

        foreach (var step in steps)
        {
            bool joins = group.Count > 0 && step.Exactness == StepExactness.Exact && group[0].Step.Exactness == StepExactness.Exact
                && !step.DropsPrefix && !group[0].Step.DropsPrefix;
            bool recalibrate = step.UsesStatistics && changedSinceStatistics && statistics is not null;
            bool unsaved = group.Any(g => g.Report.Changed);
            if (!joins || recalibrate || step.RunsModel && unsaved) Flush();
            var recognition = StructureRecognizer.Recognize(model);
            var structure = recognition.Structure ?? throw new InvalidOperationException($"{modelPath}: the structure is no longer recognized before {step.Name}: {recognition.Message}");
            if (recalibrate)
            {
                log?.WriteLine($"calibrating {previous} again for {step.Name} (earlier steps changed its activations) ...");
                statistics = Recalibration.Run(previous, calibrationWindows ?? windows, session);
                analysis = OutlierAnalyzer.Analyze(statistics, structure, analysisSettings ?? new AnalysisSettings());
                changedSinceStatistics = false;
            }
            log?.WriteLine($"{step.Name} ...");
            var report = step.Apply(new MitigationContext
            {
                Model = model, Structure = structure, Statistics = statistics, Analysis = analysis, Windows = windows, Session = session, ModelPath = modelPath,
                CurrentModelPath = previous,
            });
            group.Add((step, report));
            changedSinceStatistics |= report.Changed;
        }
        Flush();
        return new MitigationOutcome(stages, previous);
    }
}
