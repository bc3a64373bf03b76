using System.Text.Json;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// <c>--ids FILE.json</c>: pre-tokenized calibration input. The file holds either one JSON array of
/// integers (one sequence, e.g. <c>[1, 15043, 3186]</c>) or an array of such arrays (one sequence each,
/// e.g. <c>[[1, 15043], [1, 3186, 29889]]</c>); ids are non-negative 32-bit integers, taken as given
/// (specials included: a sequence that should start with BOS carries it). Each sequence is cut into
/// windows on its own; windows never span two sequences.
/// </summary>
public static class IdsFile
{
    public const long MaxBytes = 1L << 30;

    public static IReadOnlyList<int[]> Read(string path)
    {
        var facts = FileFacts.Of(path);
        if (facts.Kind != FileKind.Regular) throw new CalibrationInputException(path, facts.Exists ? $"is {facts.KindText}, not an ids file" : "does not exist");
        if (facts.Length > MaxBytes) throw new CalibrationInputException(path, $"{facts.Length} bytes: too large for an ids file");
        using var doc = TokenizerConfig.ReadJson(path, MaxBytes);
        return Parse(doc.RootElement, path);
    }

    public static IReadOnlyList<int[]> Parse(JsonElement root, string path)
    {
        const string Shape = "must be a JSON array of token ids, or an array of such arrays (one sequence each)";
        if (root.ValueKind != JsonValueKind.Array) throw new CalibrationInputException(path, Shape);
        if (root.GetArrayLength() == 0) throw new CalibrationInputException(path, "holds no token ids (an empty array)");
        bool nested = root[0].ValueKind == JsonValueKind.Array;
        var sequences = new List<int[]>();
        if (!nested) sequences.Add(Sequence(root, path, null));
        else
        {
            int i = 0;
            foreach (var seq in root.EnumerateArray())
            {
                if (seq.ValueKind != JsonValueKind.Array) throw new CalibrationInputException(path, $"element {i} is {seq.ValueKind}, not an array: {Shape}");
                if (seq.GetArrayLength() == 0) throw new CalibrationInputException(path, $"sequence {i} is empty");
                sequences.Add(Sequence(seq, path, i));
                i++;
            }
        }
        return sequences;
    }

    private static int[] Sequence(JsonElement array, string path, int? sequence)
    {
        var ids = new int[array.GetArrayLength()];
        int j = 0;
        foreach (var e in array.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id) || id < 0)
                throw new CalibrationInputException(path, $"{(sequence is int s ? $"sequence {s} " : "")}position {j} holds {(e.ValueKind == JsonValueKind.Number ? e.GetRawText() : e.ValueKind.ToString().ToLowerInvariant())}, not a token id (a non-negative 32-bit integer)");
            ids[j++] = id;
        }
        return ids;
    }
}
