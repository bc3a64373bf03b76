namespace OnnxOutlierTools.Reporting;

/// <summary>How a calibration run was fed, as the command line gave it: what stats.json and report.json need beyond the
/// probe manifest to say what was measured and to run it again. Every field is optional (a library caller that feeds
/// ids directly has no text file); null means "not given", and is written as null.</summary>
public sealed record RunSettings
{
    /// <summary>The text file (<c>--text</c>), as given.</summary>
    public string? Text { get; init; }
    /// <summary>SHA-256 of the text file (hex), so a reader can tell the same corpus from an edited one.</summary>
    public string? TextSha256 { get; init; }
    /// <summary>The pre-tokenized ids file (<c>--ids</c>), as given.</summary>
    public string? Ids { get; init; }
    /// <summary>The tokenizer file or folder used, and what kind it was read as (e.g. <c>tokenizer.json (BPE)</c>).</summary>
    public string? Tokenizer { get; init; }
    public string? TokenizerKind { get; init; }
    /// <summary>Window length in tokens (<c>--seq-len</c>).</summary>
    public int? SequenceLength { get; init; }
    /// <summary>Token budget (<c>--max-tokens</c>).</summary>
    public long? MaxTokens { get; init; }
    /// <summary><c>--bos</c> as given (auto, on, off) and what auto resolved to.</summary>
    public string? Bos { get; init; }
    public bool? BosAdded { get; init; }
    /// <summary>Batch size of the runs.</summary>
    public int? BatchSize { get; init; }
    /// <summary>The execution provider requested and the one that ran (<c>--device</c>; a CUDA fallback shows here).</summary>
    public string? Device { get; init; }
    public string? DeviceUsed { get; init; }
    /// <summary>The command line that produced the files, for copy and paste.</summary>
    public string? CommandLine { get; init; }
    /// <summary>The tool's version.</summary>
    public string? ToolVersion { get; init; }
    /// <summary>When the run finished (UTC, ISO 8601).</summary>
    public DateTimeOffset? Finished { get; init; }
}
