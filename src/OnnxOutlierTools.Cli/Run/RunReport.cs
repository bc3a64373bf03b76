using OnnxOutlierTools.Evaluation;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting.Html;

namespace OnnxOutlierTools.Cli.Run;

/// <summary>One row of run.json: a model, how it was made, and its figures against the FP32 original.</summary>
public sealed record RunRow
{
    public required string Variant { get; init; }
    /// <summary>Model file, relative to the run's folder (null: it could not be made, see <see cref="Note"/>).</summary>
    public string? Path { get; init; }
    public string? Scheme { get; init; }
    public bool Mitigated { get; init; }
    /// <summary>max |x| over every probe point of the FP model (original: analyze's statistics; mitigated: the probes run again
    /// on its output). Null for quantized rows: the activations entering their quantizers are those of their FP model.</summary>
    public double? MaxAbs { get; init; }
    /// <summary>The worst channel ratio over the linear inputs (the largest channel max |x| over the median channel's).</summary>
    public double? WorstChannelRatio { get; init; }
    public string? WorstChannelPoint { get; init; }
    public double? Perplexity { get; init; }
    public double? Cosine { get; init; }
    public double? MeanKl { get; init; }
    public double? Top1 { get; init; }
    /// <summary>Bytes of the model file and its external data.</summary>
    public long SizeBytes { get; init; }
    public double? PromptMs { get; init; }
    public double? DecodeTokensPerSecond { get; init; }
    /// <summary>The evaluation's full JSON (eval's schema), relative to the run's folder.</summary>
    public string? Evaluation { get; init; }
    public string? Note { get; init; }

    private static readonly ProbeKind[] LinearInputs = [ProbeKind.AttentionInput, ProbeKind.OutputProjectionInput, ProbeKind.FfnInput, ProbeKind.DownInput];

    public static RunRow Failed(Variant v, string output) => new() { Variant = v.Name, Scheme = v.Scheme, Mitigated = v.Mitigated, Note = v.Note };

    public static RunRow From(Variant v, EvalResult result, IReadOnlyList<PointChange> changes, string output, string evalPath)
    {
        bool fp = v.Scheme is null;
        var linear = changes.Where(c => LinearInputs.Contains(c.Kind)).ToList();
        PointChange? worst = !fp || linear.Count == 0 ? null : v.Mitigated ? linear.MaxBy(c => c.ChannelRatioAfter) : linear.MaxBy(c => c.ChannelRatioBefore);
        return new RunRow
        {
            Variant = v.Name, Path = RunPipeline.Relative(output, v.ModelPath!), Scheme = v.Scheme, Mitigated = v.Mitigated,
            MaxAbs = !fp || changes.Count == 0 ? null : v.Mitigated ? changes.Max(c => c.MaxAbsAfter) : changes.Max(c => c.MaxAbsBefore),
            WorstChannelRatio = worst is null ? null : v.Mitigated ? worst.ChannelRatioAfter : worst.ChannelRatioBefore,
            WorstChannelPoint = worst?.Point,
            Perplexity = result.Perplexity?.Model.Perplexity,
            Cosine = result.Embedding?.MeanPooledCosine,
            MeanKl = result.Divergence?.MeanKl,
            Top1 = result.Divergence?.Top1Agreement,
            SizeBytes = ModelBytes(v.ModelPath!),
            PromptMs = result.Latency?.Model.PromptMs,
            DecodeTokensPerSecond = result.Latency?.Model.DecodeTokensPerSecond,
            Evaluation = RunPipeline.Relative(output, evalPath),
            Note = v.Note ?? (result.Notes.Count > 0 ? string.Join("; ", result.Notes) : null),
        };
    }

    /// <summary>The model file and the external data files beside it that it names (every *.data / *.onnx_data there).</summary>
    private static long ModelBytes(string modelPath)
    {
        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(modelPath))!;
        return new FileInfo(modelPath).Length + Directory.EnumerateFiles(folder)
            .Where(f => f != modelPath && (f.EndsWith(".data", StringComparison.Ordinal) || f.EndsWith(".onnx_data", StringComparison.Ordinal)))
            .Sum(f => new FileInfo(f).Length);
    }
}

/// <summary>run.json (schema 1): every setting needed to reproduce the table, the table, and the files behind it.</summary>
public sealed record RunReport
{
    public const int CurrentSchemaVersion = 1;
    public int SchemaVersion { get; init; } = CurrentSchemaVersion;
    public string? ToolVersion { get; init; } = typeof(RunReport).Assembly.GetName().Version?.ToString();
    public string? CommandLine { get; init; }
    public required string Model { get; init; }
    public required string Text { get; init; }
    public string? TextSha256 { get; init; }
    public string? Tokenizer { get; init; }
    public required string Architecture { get; init; }
    public int Blocks { get; init; }
    public required IReadOnlyList<string> Recipe { get; init; }
    public required string RecipeWhy { get; init; }
    public required IReadOnlyList<string> Schemes { get; init; }
    public int CalibrationTokens { get; init; }
    public int EvalTokens { get; init; }
    public int? SequenceLength { get; init; }
    /// <summary>The evaluation windows' length when the run chose it (a baked prefix shortens the context); null: eval's default.</summary>
    public int? EvalWindow { get; init; }
    public required string Device { get; init; }
    public required IReadOnlyList<RunRow> Rows { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];
    /// <summary>analyze's report.html and mitigate's mitigation.json, relative to the run's folder.</summary>
    public string? Analysis { get; init; }
    public string? Mitigation { get; init; }
    public double Seconds { get; init; }

    public void WriteJson(string path) => AtomicTextFile.Write(path, JsonOutput.Serialize(this) + "\n", overwrite: true);

    /// <summary>The HTML table of <see cref="PipelineSection"/>.</summary>
    public PipelineTable Table(string reference) => new(
        reference,
        string.Join(", ", Recipe) + " (" + RecipeWhy + ")",
        Rows.Select(r => new PipelineRow(r.Variant, r.Path ?? "-", r.Scheme, r.Mitigated, r.MaxAbs, r.WorstChannelRatio, r.WorstChannelPoint,
            r.Perplexity, r.Cosine, r.MeanKl, r.Top1, r.SizeBytes, r.PromptMs, r.DecodeTokensPerSecond, r.Note)).ToList(),
        [
            new("text", Text), new("tokenizer", Tokenizer ?? "found beside the model"), new("calibration tokens", CalibrationTokens.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("evaluation tokens", EvalTokens.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("calibration window", SequenceLength?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "the model's default (see analysis/report.json)"),
            new("evaluation window", EvalWindow?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "eval's default, min(context, 512) (see evaluation/*.json)"),
            new("schemes", string.Join(", ", Schemes)), new("device", Device), new("command", CommandLine ?? "-"),
            new("seconds", Seconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)),
        ],
        Notes.Concat(["max |x| and the worst channel ratio are the FP models' (the quantized rows quantize those activations); " +
            "KL is KL(FP32 original || model) per next-token distribution, top-1 the share of positions whose argmax agrees."]).ToList());
}
