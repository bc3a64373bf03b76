using System.Globalization;
using System.Text.Json;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary>What a command that writes a model (<c>convert</c>, <c>import-llama2c</c>) wrote: the text line it
/// prints and, with <c>--json</c>, a JSON object for scripts. Every property is always present (null where it
/// does not apply); paths are absolute; <see cref="SchemaVersion"/> changes only when a property changes
/// meaning or disappears. Warnings also go to stderr, so a script that reads only stdout misses none.</summary>
public sealed record WriteReport(
    string Command,
    string Input,
    string Model,
    long ModelBytes,
    string? DataFile,
    long? DataFileBytes,
    string? Config,
    string Layout,
    TensorCounts Tensors,
    bool ForcedExternal,
    string? Flavour,
    string? WeightType,
    IReadOnlyList<string> Warnings)
{
    public const int CurrentSchemaVersion = 1;

    [System.Text.Json.Serialization.JsonPropertyOrder(-1)] // first, as in inspect --json
    public int SchemaVersion { get; init; } = CurrentSchemaVersion;

    /// <summary>"file"; "null-device" for a dry run to /dev/null (nothing kept); "stream" for a FIFO or character device.</summary>
    public string Target { get; init; } = "file";

    public static WriteReport From(string command, string input, SaveResult result, string layout, IReadOnlyList<string> warnings,
        string? config = null, string? flavour = null, string? weightType = null) => new(
            command, Path.GetFullPath(input), result.ModelPath, result.ModelBytes,
            result.DataPath, result.DataPath is null ? null : FileFacts.Of(result.DataPath).Length,
            config is null ? null : Path.GetFullPath(config), layout,
            new TensorCounts(result.EmbeddedTensors, result.ExternalTensors, result.ExternalBytes), result.ForcedExternal,
            flavour, weightType, [.. warnings, .. result.Warnings])
        {
            Target = result.Kind switch { OutputKind.NullDevice => "null-device", OutputKind.Stream => "stream", _ => "file" },
        };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOutput.Options);

    /// <summary>The one text line: "wrote OUT (N bytes): E tensors embedded, X external (B bytes in DATA)".</summary>
    public string ToText(string displayPath)
    {
        string externalPart = Tensors.External > 0
            ? $"{N(Tensors.External)} external ({N(Tensors.ExternalBytes)} bytes in {Path.GetFileName(DataFile)})"
            : "0 external";
        string configPart = Config is null ? "" : $", {Path.GetFileName(Config)}";
        if (Target == "null-device")
            return Text.Printable.Escape($"dry run: wrote {N(ModelBytes)} model bytes{(Tensors.External > 0 ? $" and {N(Tensors.ExternalBytes)} data bytes" : "")} " +
                $"to {displayPath}, nothing kept: {N(Tensors.Embedded)} tensors embedded, {N(Tensors.External)} external");
        return Text.Printable.Escape($"wrote {displayPath} ({N(ModelBytes)} bytes): {N(Tensors.Embedded)} tensors embedded, {externalPart}{configPart}");
    }

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}

public sealed record TensorCounts(int Embedded, int External, long ExternalBytes);
