using System.Globalization;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.Pipeline;

/// <summary><c>--sink-bias</c> (the BOS token) and <c>--sink-prefix auto|TOKENS</c>: the training-free explicit attention bias
/// (<see cref="SinkBiasPass"/>), keys and values captured from the model as the earlier steps left it. The rewritten model
/// is fed the text without the prefix; the proof feeds the original the prefix + text and the rewritten model the text,
/// and compares the outputs from the first text position on.</summary>
public sealed class SinkBiasStep(string prefix = "bos") : MitigationStep
{
    public override string Name => "sink-bias";
    public override StepExactness Exactness => StepExactness.Exact;
    public override bool DropsPrefix => true;
    public override bool RunsModel => true;
    public override bool UsesStatistics => prefix == "auto";

    /// <summary>The prefix baked in (known once <see cref="Apply"/> ran).</summary>
    public SinkPrefix? Prefix { get; private set; }
    private int? _bos;

    public override StepReport Apply(MitigationContext context)
    {
        _bos = BosId(context);
        Prefix = prefix switch
        {
            "bos" => SinkPrefix.Bos(_bos ?? throw NoBos(context)),
            "auto" => SinkPrefix.Auto(_bos ?? throw NoBos(context), context.Analysis?.MassiveActivationTokens
                ?? throw new MitigationInputException("--sink-prefix auto needs the analysis of calibration statistics (--stats or --text)")),
            _ => Parse(prefix),
        };
        CapturedSink sink;
        try { sink = SinkCapture.Capture(context.Model, context.Structure, Prefix, context.Session); }
        catch (SinkBiasException ex) { throw new MitigationInputException($"{context.ModelPath}: {ex.Message}", ex); }
        var pass = new SinkBiasPass(context.Structure, sink);
        var result = context.Model.Apply(pass);
        var lines = new List<string> { $"prefix {Prefix}: {SinkContract.Describe(sink)}" };
        lines.AddRange(sink.Layers.Select(l => string.Create(CultureInfo.InvariantCulture, $"block {l.Block}: key [{string.Join(",", l.Key.Dims)}], value [{string.Join(",", l.Value.Dims)}]")));
        return new StepReport(Name, result, lines);
    }

    private static SinkPrefix Parse(string tokens)
    {
        try { return SinkPrefix.Parse(tokens); }
        catch (Exception ex) when (ex is FormatException or ArgumentException or SinkBiasException)
        {
            throw new MitigationInputException($"--sink-prefix: {ex.Message}");
        }
    }

    /// <summary>The BOS id: the one the model's config names, else the first token of calibration windows that all start with
    /// the same token (the tokenizer prepended it); null when neither says.</summary>
    private static int? BosId(MitigationContext context)
    {
        if (context.Structure.Hints.OfType<BosTokenHint>().FirstOrDefault() is { } hint) return hint.Id;
        var firsts = context.Windows.Where(w => w.Length > 0).Select(w => w[0]).Distinct().ToList();
        return firsts.Count == 1 ? firsts[0] : null;
    }

    private static MitigationInputException NoBos(MitigationContext context) =>
        new($"{context.ModelPath}: the sink bias needs the BOS token id: the model's config names none and the calibration windows do not start with one token (use --bos on)");

    /// <summary>The original model's window: the prefix, then the text (the calibration window without its BOS), as long as
    /// the calibration window.</summary>
    public override int[] ProofWindow(int[] window)
    {
        var ids = Prefix?.TokenIds ?? throw new InvalidOperationException("the proof runs after Apply");
        var text = _bos is int bos && window.Length > 0 && window[0] == bos ? window[1..] : window;
        int keep = Math.Max(1, window.Length - ids.Count);
        return [.. ids, .. text.Take(keep)];
    }

    public override int DroppedPrefix(int[] window) => Prefix?.Length ?? 1;
}
