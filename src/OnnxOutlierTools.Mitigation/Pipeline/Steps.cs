using System.Globalization;
using OnnxOutlierTools.Mitigation.Clipping;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Fp16Safe;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Passes;

namespace OnnxOutlierTools.Mitigation.Pipeline;

/// <summary>The order <c>mitigate</c> applies its steps in, whatever the order of the options: exact scale folds first (norm
/// gains, then SmoothQuant on the activations they leave), then the fp16 power-of-two rescale (on the magnitudes the folds
/// leave), then clipping (not exact: measured against the model before it), then the explicit attention bias (its keys and
/// values are captured from the model as everything before it left it).</summary>
public static class StepOrder
{
    public static readonly string[] Names = ["fold-norms", "smooth", "fp16-safe", "clip-ma", "sink-bias"];

    public static IReadOnlyList<MitigationStep> Sort(IEnumerable<MitigationStep> steps) =>
        steps.OrderBy(s => Array.IndexOf(Names, s.Name) is var i and >= 0 ? i : Names.Length).ToList();
}

internal static class FoldLines
{
    public static IReadOnlyList<string> Of(IReadOnlyList<FoldSiteOutcome> outcomes) => outcomes.Select(o => o.Outcome switch
    {
        FoldOutcome.Exact => string.Create(CultureInfo.InvariantCulture, $"{o.SiteId}: folded, s in [{o.ScaleMin:G4}, {o.ScaleMax:G4}]"),
        FoldOutcome.MulInserted => string.Create(CultureInfo.InvariantCulture, $"{o.SiteId}: explicit Mul inserted ({o.Reason}), s in [{o.ScaleMin:G4}, {o.ScaleMax:G4}]"),
        _ => $"{o.SiteId}: skipped ({o.Reason})",
    }).ToList();
}

/// <summary><c>--fold-norms [gamma|abs]</c>: <see cref="NormGainFoldPass"/>.</summary>
public sealed class FoldNormsStep(bool keepSigns, IReadOnlyList<FoldSiteKind> sites, InexactPolicy policy) : MitigationStep
{
    public override string Name => "fold-norms";
    public override StepExactness Exactness => StepExactness.Exact;

    public override StepReport Apply(MitigationContext context)
    {
        var pass = Guard(() => new NormGainFoldPass(context.Structure, keepSigns, policy, sites), context);
        var result = context.Model.Apply(pass);
        return new StepReport(Name, result, FoldLines.Of(pass.Outcomes));
    }

    /// <summary>A fold pass refuses a structure it cannot edit (a decoder nested in an If or BeamSearch) with
    /// NotSupportedException: bad input for the user, one line.</summary>
    internal static T Guard<T>(Func<T> create, MitigationContext context)
    {
        try { return create(); }
        catch (NotSupportedException ex) { throw new MitigationInputException($"{context.ModelPath}: {ex.Message}", ex); }
    }
}

/// <summary><c>--smooth ALPHA</c>, or <c>--smooth auto</c> (alpha per site from <see cref="SiteAlphas"/>, searched on the
/// model as earlier steps left it): <see cref="SmoothQuantPass"/>.</summary>
public sealed class SmoothStep(double? alpha, IReadOnlyList<FoldSiteKind> sites, InexactPolicy policy, ActivationScheme scheme = ActivationScheme.PerTokenDynamic) : MitigationStep
{
    public override string Name => "smooth";
    public override StepExactness Exactness => StepExactness.Exact;
    public override bool UsesStatistics => true;
    public override bool RunsModel => alpha is null;

    /// <summary>The automatic search's choices (after <see cref="Apply"/> with alpha auto).</summary>
    public IReadOnlyList<SiteAlpha> Searched { get; private set; } = [];

    public override StepReport Apply(MitigationContext context)
    {
        var statistics = context.Statistics ?? throw new MitigationInputException("--smooth needs calibration statistics (--stats or --text)");
        IReadOnlyDictionary<string, double>? alphas = null;
        if (alpha is null)
        {
            Searched = SiteAlphas.Search(context.CurrentModelPath, sites, context.Windows, scheme, context.Session);
            alphas = Searched.ToDictionary(a => a.SiteId, a => a.Alpha);
        }
        var pass = FoldNormsStep.Guard(() => new SmoothQuantPass(context.Structure, statistics, alpha ?? 0.5, alphas, sites, policy), context);
        var result = context.Model.Apply(pass);
        var byId = Searched.ToDictionary(a => a.SiteId);
        var lines = FoldLines.Of(pass.Outcomes).Select((line, i) => !byId.TryGetValue(pass.Outcomes[i].SiteId, out var a) ? line
            : line + string.Create(CultureInfo.InvariantCulture, $", alpha {a.Alpha:G3} (int8 output error {a.Error:G3}, {a.UnsmoothedError:G3} unsmoothed, {a.Tokens} tokens, {a.Elapsed.TotalMilliseconds:F0} ms)")).ToList();
        return new StepReport(Name, result, lines);
    }
}

/// <summary><c>--fp16-safe</c>: <see cref="Fp16SafePass"/>.</summary>
public sealed class Fp16SafeStep(Fp16SafeSettings? settings = null) : MitigationStep
{
    public override string Name => "fp16-safe";
    public override StepExactness Exactness => StepExactness.Exact;
    public override bool UsesStatistics => true;

    public override StepReport Apply(MitigationContext context)
    {
        var statistics = context.Statistics ?? throw new MitigationInputException("--fp16-safe needs calibration statistics (--stats or --text)");
        var plan = Fp16SafePlan.Create(context.Structure, statistics, settings ?? new Fp16SafeSettings());
        if (plan.Rescales.Count == 0 && plan.Refusals.Count == 0)
            return new StepReport(Name, null, [$"nothing reaches {(settings ?? new Fp16SafeSettings()).Limit:G4} (the fp16 maximum / 4): no change"]);
        var pass = new Fp16SafePass(context.Structure, statistics, settings);
        var result = context.Model.Apply(pass);
        var lines = (pass.Applied ?? []).Select(a => string.Create(CultureInfo.InvariantCulture,
                $"block {a.Block} up->down: {a.Neurons.Count} neuron(s) scaled by 2^-k, max |y6| {a.MaxAbsBefore:G4} -> {a.MaxAbsAfter:G4}"))
            .Concat((pass.Refused ?? []).Select(r => string.Create(CultureInfo.InvariantCulture, $"{r.Point}: left alone at max |x| {r.MaxAbs:G4} ({r.Reason})")))
            .ToList();
        return new StepReport(Name, result, lines);
    }
}

/// <summary><c>--clip-ma</c>: <see cref="ClipMaPass"/> (not exact: measured).</summary>
public sealed class ClipMaStep(ClipMaSettings? settings = null) : MitigationStep
{
    public override string Name => "clip-ma";
    public override StepExactness Exactness => StepExactness.Measured;
    public override bool UsesStatistics => true;

    public override StepReport Apply(MitigationContext context)
    {
        var statistics = context.Statistics ?? throw new MitigationInputException("--clip-ma needs calibration statistics (--stats or --text)");
        var analysis = context.Analysis ?? throw new MitigationInputException("--clip-ma needs the analysis of the statistics");
        var pass = new ClipMaPass(context.Structure, analysis, statistics, settings);
        var result = context.Model.Apply(pass);
        var lines = (pass.Applied ?? []).Select(s => string.Create(CultureInfo.InvariantCulture,
                $"block {s.Block} down input: massive channel(s) {string.Join(",", s.MassiveChannels)}, neuron(s) {string.Join(", ", s.Neurons.Select(n => $"{n.Neuron} clamped to +-{n.Clamp:G4} (max {n.MaxAbs:G4})"))}"))
            .Concat((pass.Refused ?? []).Select(r => $"massive channel {r.Channel}: not clipped ({r.Reason})"))
            .ToList();
        return new StepReport(Name, result, lines);
    }
}
