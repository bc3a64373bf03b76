using System.Text;
using System.Text.Json;

namespace OnnxOutlierTools.Import;

/// <summary>
/// A llama2.c tokenizer (SentencePiece BPE with byte fallback, as exported by llama2.c's tokenizer.py) as a
/// Hugging Face tokenizer.json of the Llama 2 form, which Hugging Face tokenizers, onnxruntime-genai's
/// tokenizer and this tool's own reader load: model BPE with <c>byte_fallback</c>, a normalizer that prepends
/// "▁" and turns spaces into "▁" (run.c's dummy prefix), a template that starts with BOS, and the decoder chain
/// ▁ -> space, byte fallback, fuse, strip one leading space.
///
/// Merges: run.c merges, at each step, the adjacent pair whose concatenation is the highest-scoring piece; a
/// BPE rank list reproduces that when every split (left, right) of every piece is a merge, ranked by the
/// piece's score (higher first; ties by id), which is how Hugging Face converts SentencePiece BPE models.
/// Ids 0, 1, 2 are &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt; (llama2.c stores BOS/EOS as "\n&lt;s&gt;\n" / "\n&lt;/s&gt;\n").
/// </summary>
public static class Llama2cTokenizerJson
{
    public const string Unk = "<unk>", BosToken = "<s>", EosToken = "</s>";
    private const char SpaceMark = '\u2581';

    public static string Create(Llama2cTokenizer tokenizer, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        string[] pieces = Pieces(tokenizer, sourceName);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < pieces.Length; i++)
            if (!ids.TryAdd(pieces[i], i))
                throw new Llama2cFormatException(sourceName, $"tokens {ids[pieces[i]]} and {i} are both {JsonSerializer.Serialize(pieces[i])}; a tokenizer.json vocabulary needs distinct pieces");

        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, Inspection.JsonOutput.WriterOptions))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            foreach (var (id, content) in new[] { (0, Unk), (Llama2cTokenizer.Bos, BosToken), (Llama2cTokenizer.Eos, EosToken) })
            {
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("content", content);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            WriteNormalizer(w);
            w.WriteNull("pre_tokenizer");
            WritePostProcessor(w);
            WriteDecoder(w);
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            w.WriteString("unk_token", Unk);
            w.WriteNull("continuing_subword_prefix");
            w.WriteNull("end_of_word_suffix");
            w.WriteBoolean("fuse_unk", true);
            w.WriteBoolean("byte_fallback", true);
            w.WriteBoolean("ignore_merges", false);
            w.WriteStartObject("vocab");
            for (int i = 0; i < pieces.Length; i++) w.WriteNumber(pieces[i], i);
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var (left, right) in Merges(tokenizer, pieces, ids))
            {
                w.WriteStartArray();
                w.WriteStringValue(left);
                w.WriteStringValue(right);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    /// <summary>A tokenizer_config.json for the folder: LlamaTokenizer, BOS added, EOS not (run.c's encode).</summary>
    public static string CreateConfig(int modelMaxLength)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, Inspection.JsonOutput.WriterOptions))
        {
            w.WriteStartObject();
            w.WriteBoolean("add_bos_token", true);
            w.WriteBoolean("add_eos_token", false);
            w.WriteString("bos_token", BosToken);
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            w.WriteString("eos_token", EosToken);
            w.WriteBoolean("legacy", true);
            w.WriteNumber("model_max_length", modelMaxLength);
            w.WriteString("pad_token", Unk);
            w.WriteString("tokenizer_class", "LlamaTokenizer");
            w.WriteString("unk_token", Unk);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    // Pieces as tokenizer.json spells them: UTF-8 text with spaces as "▁"; the special ids by their names.
    private static string[] Pieces(Llama2cTokenizer tokenizer, string sourceName)
    {
        var strict = new UTF8Encoding(false, throwOnInvalidBytes: true);
        var pieces = new string[tokenizer.VocabSize];
        for (int i = 0; i < pieces.Length; i++)
        {
            pieces[i] = i switch
            {
                0 => Unk,
                Llama2cTokenizer.Bos => BosToken,
                Llama2cTokenizer.Eos => EosToken,
                _ => Decode(i),
            };
        }
        return pieces;

        string Decode(int id)
        {
            try { return strict.GetString(tokenizer.Piece(id)).Replace(' ', SpaceMark); }
            catch (DecoderFallbackException)
            {
                throw new Llama2cFormatException(sourceName, $"token {id} is not valid UTF-8 ({Convert.ToHexString(tokenizer.Piece(id))}); tokenizer.json cannot hold it");
            }
        }
    }

    // Every split of every mergeable piece into two vocabulary pieces, the piece's score deciding the rank.
    private static IEnumerable<(string Left, string Right)> Merges(Llama2cTokenizer tokenizer, string[] pieces, Dictionary<string, int> ids)
    {
        var merges = new List<(float Score, int Id, int LeftId, string Left, string Right)>();
        for (int id = Llama2cTokenizer.Eos + 1; id < pieces.Length; id++)
        {
            string piece = pieces[id];
            if (IsByteToken(piece)) continue;
            var runes = piece.EnumerateRunes().Select(r => r.ToString()).ToArray();
            for (int cut = 1; cut < runes.Length; cut++)
            {
                string left = string.Concat(runes[..cut]), right = string.Concat(runes[cut..]);
                if (ids.TryGetValue(left, out int leftId) && ids.ContainsKey(right) && !IsByteToken(left) && !IsByteToken(right))
                    merges.Add((tokenizer.Score(id), id, leftId, left, right));
            }
        }
        return merges.OrderByDescending(m => m.Score).ThenBy(m => m.Id).ThenBy(m => m.LeftId).Select(m => (m.Left, m.Right));
    }

    private static bool IsByteToken(string piece) => piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>';

    private static void WriteNormalizer(Utf8JsonWriter w)
    {
        w.WriteStartObject("normalizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("normalizers");
        w.WriteStartObject();
        w.WriteString("type", "Prepend");
        w.WriteString("prepend", SpaceMark.ToString());
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "Replace");
        w.WriteStartObject("pattern");
        w.WriteString("String", " ");
        w.WriteEndObject();
        w.WriteString("content", SpaceMark.ToString());
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WritePostProcessor(Utf8JsonWriter w)
    {
        w.WriteStartObject("post_processor");
        w.WriteString("type", "TemplateProcessing");
        w.WriteStartArray("single");
        Special(w, 0);
        Sequence(w, "A", 0);
        w.WriteEndArray();
        w.WriteStartArray("pair");
        Special(w, 0);
        Sequence(w, "A", 0);
        Special(w, 1);
        Sequence(w, "B", 1);
        w.WriteEndArray();
        w.WriteStartObject("special_tokens");
        w.WriteStartObject(BosToken);
        w.WriteString("id", BosToken);
        w.WriteStartArray("ids");
        w.WriteNumberValue(Llama2cTokenizer.Bos);
        w.WriteEndArray();
        w.WriteStartArray("tokens");
        w.WriteStringValue(BosToken);
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();

        static void Special(Utf8JsonWriter w, int typeId)
        {
            w.WriteStartObject();
            w.WriteStartObject("SpecialToken");
            w.WriteString("id", BosToken);
            w.WriteNumber("type_id", typeId);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        static void Sequence(Utf8JsonWriter w, string id, int typeId)
        {
            w.WriteStartObject();
            w.WriteStartObject("Sequence");
            w.WriteString("id", id);
            w.WriteNumber("type_id", typeId);
            w.WriteEndObject();
            w.WriteEndObject();
        }
    }

    private static void WriteDecoder(Utf8JsonWriter w)
    {
        w.WriteStartObject("decoder");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("decoders");
        w.WriteStartObject();
        w.WriteString("type", "Replace");
        w.WriteStartObject("pattern");
        w.WriteString("String", SpaceMark.ToString());
        w.WriteEndObject();
        w.WriteString("content", " ");
        w.WriteEndObject();
        foreach (string type in new[] { "ByteFallback", "Fuse" })
        {
            w.WriteStartObject();
            w.WriteString("type", type);
            w.WriteEndObject();
        }
        w.WriteStartObject();
        w.WriteString("type", "Strip");
        w.WriteString("content", " ");
        w.WriteNumber("start", 1);
        w.WriteNumber("stop", 0);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
