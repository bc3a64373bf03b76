using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.Pipeline;

/// <summary>Whether a step must leave the model's function unchanged (then it is proven) or changes it on purpose (then
/// its effect is measured).</summary>
public enum StepExactness { Exact, Measured }

/// <summary>What a step reads: the model being rewritten with its structure recognized now (earlier steps may have
/// changed the graph), the calibration statistics and their analysis (of the original model), and the windows.</summary>
public sealed record MitigationContext
{
    public required Model Model { get; init; }
    public required ModelStructure Structure { get; init; }
    public CalibrationStatistics? Statistics { get; init; }
    public AnalysisResult? Analysis { get; init; }
    /// <summary>Calibration windows (token ids as the original model is fed them, BOS included where the model takes it).</summary>
    public IReadOnlyList<int[]> Windows { get; init; } = [];
    public SessionSettings Session { get; init; } = new() { Device = ExecutionDevice.Cpu };
    /// <summary>The file the model being rewritten was read from (its external data folder).</summary>
    public required string ModelPath { get; init; }
    /// <summary>A file holding the model as it is now, for steps that run it (capture activations, keys and values): for a
    /// step that <see cref="MitigationStep.UsesStatistics"/> or <see cref="MitigationStep.RunsModel"/>, the last stage
    /// saved after every earlier change (the original when nothing changed yet).</summary>
    public required string CurrentModelPath { get; init; }
}

/// <summary>What a step did: its pass result (counts per rule, skipped sites) and lines for the user (per-site outcomes).</summary>
public sealed record StepReport(string Step, PassResult? Pass, IReadOnlyList<string> Lines, bool? ChangedModel = null)
{
    /// <summary>Whether the step edited the model (its pass says so, unless the step states it).</summary>
    public bool Changed => ChangedModel ?? Pass?.Changed ?? false;
}

/// <summary>One mitigation of <c>mitigate</c>: a graph rewrite with its place in the fixed order and how it is checked.</summary>
public abstract class MitigationStep
{
    /// <summary>The option's name (<c>fold-norms</c>, <c>smooth</c>, ...), used in messages.</summary>
    public abstract string Name { get; }
    public abstract StepExactness Exactness { get; }

    /// <summary>Edits <see cref="MitigationContext.Model"/> in place.</summary>
    public abstract StepReport Apply(MitigationContext context);

    /// <summary>How the proof feeds one calibration window: the original model gets <paramref name="window"/>, the rewritten one
    /// the window without its first <c>Dropped</c> tokens (a baked prefix), whose outputs are compared with the original's
    /// from that position on. Default: the same window, nothing dropped.</summary>
    public virtual int DroppedPrefix(int[] window) => 0;

    /// <summary>The rewritten model takes a shorter input than the original (<see cref="DroppedPrefix"/> is not always 0):
    /// the step is proven on its own.</summary>
    public virtual bool DropsPrefix => false;

    /// <summary>The calibration window as the proof feeds it to the original model (a step whose rewritten model bakes a
    /// prefix needs windows that start with that prefix). Default: unchanged.</summary>
    public virtual int[] ProofWindow(int[] window) => window;

    /// <summary>The step reads the calibration statistics (scales from activation ranges, bounds, findings): the pipeline then
    /// gives it statistics of the model as earlier steps left it, calibrating again when one of them changed it.</summary>
    public virtual bool UsesStatistics => false;

    /// <summary>The step runs the model as earlier steps left it (<see cref="MitigationContext.CurrentModelPath"/>): the
    /// pipeline saves (and proves) the earlier steps first.</summary>
    public virtual bool RunsModel => false;
}
