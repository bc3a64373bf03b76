using System.Text.Json;
using OnnxOutlierTools.Text;

namespace OnnxOutlierTools.IO;

/// <summary>Finds the model file in a folder the way exporters lay them out, so a user can name the folder
/// they downloaded: an onnxruntime-genai folder (its genai_config.json names the decoder), a Hugging Face /
/// Optimum folder (model.onnx, or onnx/model.onnx as transformers.js repositories have it), or a folder
/// with a single .onnx file. Where that leaves a choice, the error lists the candidates rather than guess.</summary>
public static class ModelLocator
{
    public const string GenAiConfig = "genai_config.json";

    /// <summary>The rules, in the order they are tried, for messages.</summary>
    private const string Rules = "genai_config.json, model.onnx, onnx/model.onnx, a single *.onnx";

    // A genai_config.json is a few KB; anything far larger is not one, and is not read whole.
    private const long MaxConfigBytes = 1 << 20;

    /// <summary><paramref name="path"/> itself when it is not a directory (a missing file is the reader's
    /// to report); for a directory, the model file in it. Throws <see cref="ModelLoadException"/> naming the
    /// folder when there is none or more than one candidate.</summary>
    public static string Locate(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!Directory.Exists(path)) return path;
        if (File.Exists(Path.Combine(path, GenAiConfig))) return FromGenAiConfig(path);
        foreach (string relative in new[] { "model.onnx", Path.Combine("onnx", "model.onnx") })
            if (File.Exists(Path.Combine(path, relative))) return Path.Combine(path, relative);

        var top = OnnxFiles(path);
        if (top.Count == 1) return top[0];
        if (top.Count > 1) throw Ambiguous(path, top);
        string sub = Path.Combine(path, "onnx");
        var nested = Directory.Exists(sub) ? OnnxFiles(sub) : [];
        if (nested.Count == 1) return nested[0];
        if (nested.Count > 1) throw Ambiguous(path, nested);
        throw new ModelLoadException(path, $"is a directory without an ONNX model (looked for {Rules})");
    }

    /// <summary>The decoder that genai_config.json names (<c>model.decoder.filename</c>), which must be a
    /// file inside the folder: the config comes with a download and is not trusted to point elsewhere.</summary>
    private static string FromGenAiConfig(string folder)
    {
        string configPath = Path.Combine(folder, GenAiConfig);
        string? name;
        try
        {
            if (new FileInfo(configPath).Length > MaxConfigBytes)
                throw new ModelLoadException(configPath, $"larger than {MaxConfigBytes} bytes; not a genai_config.json");
            using var doc = JsonDocument.Parse(File.ReadAllBytes(configPath));
            name = doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.Object
                && model.TryGetProperty("decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object
                && decoder.TryGetProperty("filename", out var file) && file.ValueKind == JsonValueKind.String
                ? file.GetString() : null;
        }
        catch (JsonException ex)
        {
            throw new ModelLoadException(configPath, $"not valid JSON: {Printable.FirstLine(ex.Message)}", ex);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ModelLoadException(configPath, $"cannot read: {Printable.FirstLine(ex.Message)}", ex);
        }
        if (string.IsNullOrEmpty(name))
            throw new ModelLoadException(configPath, "has no model.decoder.filename naming the model; pass the .onnx file itself");
        string root = Path.GetFullPath(folder);
        string full = Path.GetFullPath(Path.Combine(root, name));
        if (Path.IsPathRooted(name) || !full.StartsWith(Path.TrimEndingDirectorySeparator(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new ModelLoadException(configPath, $"model.decoder.filename '{Printable.Escape(name)}' is outside the folder");
        if (!File.Exists(full))
            throw new ModelLoadException(configPath, $"model.decoder.filename '{Printable.Escape(name)}' not found in the folder");
        return Path.Combine(folder, name);
    }

    private static List<string> OnnxFiles(string folder) =>
        Directory.EnumerateFiles(folder, "*.onnx", new EnumerationOptions { MatchCasing = MatchCasing.CaseInsensitive, RecurseSubdirectories = false })
            .Order(StringComparer.Ordinal).ToList();

    private static ModelLoadException Ambiguous(string folder, List<string> candidates)
    {
        const int shown = 8;
        var names = candidates.Take(shown).Select(c => Printable.Escape(Path.GetRelativePath(folder, c)));
        string more = candidates.Count > shown ? $" and {candidates.Count - shown} more" : "";
        return new ModelLoadException(folder,
            $"is a directory with {candidates.Count} models ({string.Join(", ", names)}{more}); name the one to use");
    }
}
