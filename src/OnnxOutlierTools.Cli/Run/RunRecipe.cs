using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Cli.Run;

/// <summary>The mitigation steps a run applies, by name, and why.</summary>
public sealed record RecipeChoice(IReadOnlyList<string> Names, string Why)
{
    public IReadOnlyList<MitigationStep> Steps() => Names.Select(RunRecipe.Step).ToList();
}

/// <summary>The pipeline's default recipe per architecture (README "Pipeline"), from the recognized structure and what
/// analyze found, and the named steps a user can ask for instead. Every default step is exact, so the mitigated model
/// computes what the original does (proven by mitigate) and differences after quantization are the quantizer's:
/// <list type="bullet">
/// <item>fold-norms (s = gamma) always: the norms' gains are the channel-wise outliers' source (SCIENCE.md 2.1); in
/// post-norm encoders the fold takes an explicit Mul in front of the linears (exact).</item>
/// <item>smooth auto at the norm sites: per site the alpha whose int8 fake-quantized output error on the calibration
/// activations is smallest, 0 (no smoothing) included, so smoothing never makes a site worse on the windows it saw.</item>
/// <item>sink-bias for causal decoders where analyze found a massive activation: the BOS position's keys and values
/// baked in, so no fed token carries the massive activation (SCIENCE.md 2.3); dropped with a note where the
/// attention layout is one the rewrite refuses.</item>
/// <item>fp16-safe where analyze found values beyond or near the fp16 range.</item>
/// </list>
/// clip-ma is never a default: it changes the model's outputs.</summary>
public static class RunRecipe
{
    public static readonly IReadOnlyList<string> DefaultSchemes = ["w8a8-static", "w8a8-dynamic", "int4-rtn", "int4-awq"];
    public static readonly IReadOnlyList<string> StepNames = ["fold-norms", "smooth", "fp16-safe", "clip-ma", "sink-bias"];

    public static RecipeChoice Default(ModelStructure structure, AnalysisResult analysis)
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(analysis);
        var names = new List<string> { "fold-norms", "smooth" };
        var why = new List<string> { "fold-norms and smooth auto (exact) for every architecture" };
        if (analysis.Fp16Range.Count > 0)
        {
            names.Add("fp16-safe");
            why.Add($"fp16-safe: {analysis.Fp16Range.Count} point(s) beyond or near the fp16 range");
        }
        if (structure.Architecture == ModelArchitecture.Decoder && analysis.MassiveActivations.Count > 0)
        {
            names.Add("sink-bias");
            why.Add($"sink-bias: a causal decoder with {analysis.MassiveActivations.Count} massive activation(s)");
        }
        else if (analysis.MassiveActivations.Count > 0)
            why.Add($"no sink-bias: {structure.Architecture.ToString().ToLowerInvariant()} models are not causal decoders");
        return new RecipeChoice(names, string.Join("; ", why));
    }

    public static RecipeChoice Parse(IEnumerable<string> names)
    {
        var list = names.Select(n => n.Trim().ToLowerInvariant()).Where(n => n.Length > 0).Distinct().ToList();
        foreach (string name in list)
            if (!StepNames.Contains(name)) throw new UsageException($"--recipe: unknown step '{name}' (known: {string.Join(", ", StepNames)})");
        if (list.Count == 0) throw new UsageException("--recipe: name at least one step");
        return new RecipeChoice(list, "as asked (--recipe)");
    }

    /// <summary>The step a name stands for, with the pipeline's settings.</summary>
    public static MitigationStep Step(string name) => name switch
    {
        "fold-norms" => new FoldNormsStep(keepSigns: false, FoldSiteKinds.NormSites, InexactPolicy.Mul),
        "smooth" => new SmoothStep(null, FoldSiteKinds.NormSites, InexactPolicy.Mul),
        "fp16-safe" => new Fp16SafeStep(),
        "clip-ma" => new ClipMaStep(),
        "sink-bias" => new SinkBiasStep(),
        _ => throw new UsageException($"unknown mitigation step '{name}'"),
    };
}
